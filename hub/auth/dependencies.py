"""Who is asking: typed dependencies for routes."""

from typing import Annotated

from fastapi import Depends, Request

from hub.auth import service
from hub.auth.exceptions import NotAdministrator
from hub.auth.service import Caller
from hub.config import SettingsDep
from hub.db import SessionDep
from hub.keys import KeysDep


async def _caller(
    request: Request, session: SessionDep, settings: SettingsDep, keys: KeysDep
) -> Caller:
    return await service.caller_from_token(
        session,
        authorization=request.headers.get("authorization"),
        settings=settings,
        keys=keys,
        scope=getattr(request.state, "audit", None),
    )


async def _administrator(request: Request, keys: KeysDep) -> None:
    """The bootstrap administrator: ``Authorization: Bearer <var/keys/admin-token>``."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not keys.is_admin_token(token.strip()):
        raise NotAdministrator(
            "this route needs the administrator token", headers={"WWW-Authenticate": "Bearer"}
        )
    audit = getattr(request.state, "audit", None)
    if audit is not None:
        audit.note(client="administrator")


async def _bearer(request: Request, settings: SettingsDep, keys: KeysDep) -> Caller:
    return service.caller_from_bearer(
        authorization=request.headers.get("authorization"),
        settings=settings,
        keys=keys,
        scope=getattr(request.state, "audit", None),
    )


# A valid token whose client is still active (one registry read).
CurrentCaller = Annotated[Caller, Depends(_caller)]
# A valid token only: the route must itself call service.require_active_client
# (the exchange does, within its single query).
BearerCaller = Annotated[Caller, Depends(_bearer)]
AdminDep = Annotated[None, Depends(_administrator)]
