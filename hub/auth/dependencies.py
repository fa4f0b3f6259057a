"""Who is asking: typed dependencies for routes."""

from typing import Annotated

from fastapi import Depends, Request, Response

from onceonly.hub.auth import callers, service
from onceonly.hub.auth.callers import Caller, ResourceRequest
from onceonly.hub.config import Settings, SettingsDep
from onceonly.hub.db import SessionDep
from onceonly.hub.keys import HubKeys, KeysDep


def resource_request(request: Request, settings: Settings) -> ResourceRequest:
    """The request as authentication reads it; ``htu`` is judged against the issuer's
    public URL, so that a TLS proxy in front of the hub changes nothing."""
    header = settings.tls_client_cert_header
    return ResourceRequest(
        authorization=request.headers.get("authorization"),
        dpop_proofs=request.headers.getlist("dpop"),
        method=request.method,
        url=settings.issuer.rstrip("/") + request.url.path,
        certificate=request.headers.get(header) if header else None,
    )


def _offer_nonce(response: Response, settings: Settings, keys: HubKeys) -> None:
    response.headers.update(service.dpop_nonce_header(settings, keys))


async def current_caller(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    keys: KeysDep,
) -> Caller:
    caller = await callers.caller_from_token(
        session,
        jtis=request.app.state.jti_register,
        request=resource_request(request, settings),
        settings=settings,
        keys=keys,
        scope=getattr(request.state, "audit", None),
    )
    _offer_nonce(response, settings, keys)
    return caller


async def _token_caller(
    request: Request, response: Response, settings: SettingsDep, keys: KeysDep
) -> Caller:
    caller = callers.caller_from_request(
        resource_request(request, settings),
        settings=settings,
        keys=keys,
        scope=getattr(request.state, "audit", None),
    )
    _offer_nonce(response, settings, keys)
    return caller


# A valid, correctly presented token (DPoP-bound when require_dpop) whose client is
# still active and which is not revoked (one query); its DPoP proof spent.
CurrentCaller = Annotated[Caller, Depends(current_caller)]
# The same checks without I/O: the route must check the client's standing, the
# revocation and the proof's single use itself (the exchange does, with its one read).
TokenCaller = Annotated[Caller, Depends(_token_caller)]
