"""Dependencies that make a route an audited one."""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response

from onceonly.hub.access.service import AUDIT_READ_SCOPE
from onceonly.hub.audit.checkpoints import Checkpointer
from onceonly.hub.audit.readers import AUDITOR, PUBLIC, Reader
from onceonly.hub.audit.request_scope import open_audit_scope
from onceonly.hub.audit.service import AuditLog, AuditScope
from onceonly.hub.auth.dependencies import current_caller
from onceonly.hub.config import SettingsDep
from onceonly.hub.db import SessionDep
from onceonly.hub.keys import KeysDep
from onceonly.hub.people.dependencies import current_principal


def audited(action: str) -> Callable[[Request], Coroutine[Any, Any, AuditScope]]:
    """A route dependency that opens the request's audit scope for ``action``.

    Put it in the route's ``dependencies`` so it runs before authentication: then a
    refusal at any later step (no token, bad body, no grant) is audited too.
    """

    async def open_scope(request: Request) -> AuditScope:
        return open_audit_scope(request, action)

    return open_scope


async def _current_scope(request: Request) -> AuditScope:
    scope: AuditScope = request.state.audit
    return scope


async def _audit_log(request: Request) -> AuditLog:
    log: AuditLog = request.app.state.audit_log
    return log


async def _checkpointer(request: Request) -> Checkpointer:
    checkpointer: Checkpointer = request.app.state.checkpointer
    return checkpointer


CurrentAudit = Annotated[AuditScope, Depends(_current_scope)]
AuditLogDep = Annotated[AuditLog, Depends(_audit_log)]
CheckpointerDep = Annotated[Checkpointer, Depends(_checkpointer)]


def _is_machine_token(authorization: str) -> bool:
    """Machine clients present a JWT access token (``DPoP`` scheme, or ``Bearer`` where
    DPoP is not required); people present their opaque session token."""
    scheme, _, token = authorization.partition(" ")
    return scheme.lower() == "dpop" or token.strip().count(".") == 2


async def _reader(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    keys: KeysDep,
) -> Reader:
    """Who reads the log (onceonly.hub.audit.readers). No credentials: the public, who see leaf
    hashes only. Credentials that do not hold are refused (401/403), never read as
    anonymous; the read, or its refusal, is then an ``audit.read`` entry."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        return PUBLIC
    open_audit_scope(request, "audit.read")
    if _is_machine_token(authorization):
        caller = await current_caller(request, response, session, settings, keys)
        caller.require_scope(AUDIT_READ_SCOPE)
        return Reader(department=caller.department)
    principal = await current_principal(request, session, settings, keys)
    principal.require_auditor()
    return AUDITOR


async def _read_scope(request: Request) -> AuditScope | None:
    scope: AuditScope | None = getattr(request.state, "audit", None)
    return scope


AuditReaderDep = Annotated[Reader, Depends(_reader)]
# The audit scope of a read by a caller who presented credentials (None for the public).
ReadScope = Annotated[AuditScope | None, Depends(_read_scope)]
