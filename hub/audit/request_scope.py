"""The one way a request opens its audit scope (imported by every route dependency that
audits: onceonly.hub.audit.dependencies and onceonly.hub.people.dependencies)."""

from starlette.requests import Request

from onceonly.hub.audit.service import AuditLog, AuditScope
from onceonly.hub.kit.rate_limit import source_of


def open_audit_scope(request: Request, action: str, *, log: AuditLog) -> AuditScope:
    """The request's audit scope for ``action``, written to ``log``: the hub's request id,
    and the caller's own id held beside it, which the entry keeps only once the client
    has authenticated (``AuditScope.client_authenticated``; onceonly.hub.middleware puts
    both in the request's state)."""
    state = request.state
    scope = AuditScope(
        log=log,
        action=action,
        request_id=state.request_id,
        client_request_id=state.client_request_id,
        source=source_of(request.client.host) if request.client else None,
    )
    state.audit = scope
    return scope
