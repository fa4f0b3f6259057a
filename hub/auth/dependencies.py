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


def _administrator(request: Request, keys: KeysDep) -> None:
    """The bootstrap administrator: ``Authorization: Bearer <var/keys/admin-token>``."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not keys.is_admin_token(token.strip()):
        raise NotAdministrator(
            "this route needs the administrator token", headers={"WWW-Authenticate": "Bearer"}
        )
    audit = getattr(request.state, "audit", None)
    if audit is not None:
        audit.note(client="administrator")


CurrentCaller = Annotated[Caller, Depends(_caller)]
AdminDep = Annotated[None, Depends(_administrator)]
