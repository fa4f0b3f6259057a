"""Who is asking: the one authentication layer, typed dependencies for routes.

A machine client becomes a :class:`~onceonly.hub.auth.callers.Caller` (its access
token and proof checked here), a person or the break-glass token a
:class:`~onceonly.hub.people.principal.Principal` (onceonly.hub.people.dependencies);
:class:`Authenticator` accepts one kind or both and gives either as an
:class:`~onceonly.hub.auth.principal.AuthPrincipal`.
"""

from typing import Annotated

from fastapi import Depends, Request, Response

from onceonly.hub.auth import callers, service
from onceonly.hub.auth.callers import Caller, ResourceRequest
from onceonly.hub.auth.principal import AuthPrincipal
from onceonly.hub.config import Settings
from onceonly.hub.dependencies import HubDep, SessionDep
from onceonly.hub.keys import HubKeys
from onceonly.hub.kit.asgi_scope import SENT_METHOD
from onceonly.hub.kit.clock import Clock
from onceonly.hub.people.dependencies import current_principal


def resource_request(request: Request, settings: Settings) -> ResourceRequest:
    """The request as authentication reads it; ``htu`` is judged against the issuer's
    public URL, so that a TLS proxy in front of the hub changes nothing."""
    header = settings.tls_client_cert_header
    return ResourceRequest(
        authorization=request.headers.get("authorization"),
        dpop_proofs=request.headers.getlist("dpop"),
        method=request.scope.get(SENT_METHOD, request.method),  # HEAD answered as GET
        url=settings.issuer.rstrip("/") + request.url.path,
        certificate=request.headers.get(header) if header else None,
    )


def _offer_nonce(response: Response, settings: Settings, keys: HubKeys, clock: Clock) -> None:
    response.headers.update(service.dpop_nonce_header(settings, keys, clock=clock))


async def current_caller(
    request: Request, response: Response, session: SessionDep, hub: HubDep
) -> Caller:
    """The machine client of a resource request: standing checked, proof spent.

    The session only reads here (the client's standing); it is committed as soon as
    that is read, which gives its connection back to the pool before the proof's spend
    waits for its group commit and before the route takes a connection of its own (a
    write session): no request holds one connection while it waits for another
    (decision 0056's Later note). A route that uses the session again takes one then."""
    caller = await callers.caller_from_token(
        session,
        jtis=hub.jti_register,
        request=resource_request(request, hub.settings),
        settings=hub.settings,
        keys=hub.keys,
        scope=getattr(request.state, "audit", None),
        clock=hub.clock,
    )
    _offer_nonce(response, hub.settings, hub.keys, hub.clock)
    return caller


async def token_caller(request: Request, response: Response, hub: HubDep) -> Caller:
    """The machine client of a resource request, from its token and proof alone (the
    client's standing and the proof's single use are the route's to check)."""
    caller = callers.caller_from_request(
        resource_request(request, hub.settings),
        settings=hub.settings,
        keys=hub.keys,
        scope=getattr(request.state, "audit", None),
        clock=hub.clock,
    )
    _offer_nonce(response, hub.settings, hub.keys, hub.clock)
    return caller


def is_machine_credential(authorization: str) -> bool:
    """Machine clients present a JWT access token (``DPoP`` scheme, or ``Bearer`` where
    DPoP is not required); people present their opaque session token."""
    scheme, _, token = authorization.partition(" ")
    return scheme.lower() == "dpop" or token.strip().count(".") == 2


class Authenticator:
    """A route dependency that recognizes the caller as an :class:`AuthPrincipal`.

    With ``clients`` and ``people`` both on, the credential's shape decides which
    check runs (a JWT access token: a machine client; anything else: a person's
    session or the break-glass token); with one of them, only that check runs, so a
    machine never gets a person's powers nor a person a client's.
    """

    def __init__(self, *, clients: bool = False, people: bool = False) -> None:
        if not (clients or people):
            raise ValueError("an authenticator accepts clients, people, or both")
        self._clients, self._people = clients, people

    async def __call__(
        self, request: Request, response: Response, session: SessionDep, hub: HubDep
    ) -> AuthPrincipal:
        authorization = request.headers.get("authorization") or ""
        if self._clients and not (self._people and not is_machine_credential(authorization)):
            return AuthPrincipal(client=await current_caller(request, response, session, hub))
        return AuthPrincipal(person=await current_principal(request, session, hub))


# A valid, correctly presented token (DPoP-bound when require_dpop) whose client is
# still active and which is not revoked (one query); its DPoP proof spent.
CurrentCaller = Annotated[Caller, Depends(current_caller)]
# The same checks without I/O: the route must check the client's standing, the
# revocation and the proof's single use itself (the exchange does, with its one read).
TokenCaller = Annotated[Caller, Depends(token_caller)]
