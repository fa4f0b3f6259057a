"""Dependencies that make a route an audited one."""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request

from hub.audit.checkpoints import Checkpointer
from hub.audit.service import AuditLog, AuditScope


def audited(action: str) -> Callable[[Request], Coroutine[Any, Any, AuditScope]]:
    """A route dependency that opens the request's audit scope for ``action``.

    Put it in the route's ``dependencies`` so it runs before authentication: then a
    refusal at any later step (no token, bad body, no grant) is audited too.
    """

    async def open_scope(request: Request) -> AuditScope:
        scope = AuditScope(
            log=request.app.state.audit_log, action=action, request_id=request.state.request_id
        )
        request.state.audit = scope
        return scope

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
