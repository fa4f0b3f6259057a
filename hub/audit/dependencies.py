"""Dependencies of the audit routes: what makes a route an audited one, who reads the
log, and an auditor's filter."""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response

from onceonly.hub.audit.readers import AUDITOR, PUBLIC, Reader
from onceonly.hub.audit.repository import EntryFilter
from onceonly.hub.audit.request_scope import open_audit_scope
from onceonly.hub.audit.service import AuditScope
from onceonly.hub.auth.dependencies import Authenticator
from onceonly.hub.auth.principal import AuthPrincipal
from onceonly.hub.auth.scopes import AUDIT_READ_SCOPE
from onceonly.hub.dependencies import AuditLogDep, HubDep, KeysDep, SessionDep
from onceonly.hub.kit.clock import as_utc
from onceonly.hub.kit.strict import Rfc3339, Subject


def audited(action: str) -> Callable[..., Coroutine[Any, Any, AuditScope]]:
    """A route dependency that opens the request's audit scope for ``action``.

    Put it in the route's ``dependencies`` so it runs before authentication: then a
    refusal at any later step (no token, bad body, no grant) is audited too.
    """

    async def open_scope(request: Request, log: AuditLogDep) -> AuditScope:
        return open_audit_scope(request, action, log=log)

    return open_scope


async def _current_scope(request: Request) -> AuditScope:
    scope: AuditScope = request.state.audit
    return scope


CurrentAudit = Annotated[AuditScope, Depends(_current_scope)]


def reader_of(principal: AuthPrincipal) -> Reader:
    """A client with ``audit:read`` reads its department's entries, an auditor (or the
    break-glass token) every entry; anyone else is refused (403)."""
    if principal.client is not None:
        principal.client.require_scope(AUDIT_READ_SCOPE)
        return Reader(department=principal.client.department)
    assert principal.person is not None
    principal.person.require_auditor()
    return AUDITOR


_client_or_person = Authenticator(clients=True, people=True)


async def _reader(request: Request, response: Response, session: SessionDep, hub: HubDep) -> Reader:
    """Who reads the log (onceonly.hub.audit.readers). No credentials: the public, who see leaf
    hashes only. Credentials that do not hold are refused (401/403), never read as
    anonymous; the read, or its refusal, is then an ``audit.read`` entry."""
    if request.headers.get("authorization") is None:
        return PUBLIC
    open_audit_scope(request, "audit.read", log=hub.audit_log)
    return reader_of(await _client_or_person(request, response, session, hub))


async def _read_scope(request: Request) -> AuditScope | None:
    scope: AuditScope | None = getattr(request.state, "audit", None)
    return scope


AuditReaderDep = Annotated[Reader, Depends(_reader)]
# The audit scope of a read by a caller who presented credentials (None for the public).
ReadScope = Annotated[AuditScope | None, Depends(_read_scope)]


async def _entry_filter(
    keys: KeysDep,
    subject: Annotated[Subject | None, Query()] = None,
    department: str | None = Query(default=None, max_length=64),
    item: str | None = Query(default=None, max_length=128),
    action: str | None = Query(default=None, max_length=64),
    outcome: str | None = Query(default=None, max_length=16),
    since: Annotated[Rfc3339 | None, Query(description="RFC 3339; at or after")] = None,
    until: Annotated[Rfc3339 | None, Query(description="RFC 3339; before")] = None,
) -> EntryFilter:
    """The auditor's filter, shared by the query and the export. The subject is turned
    into its pseudonym here, so the identifier goes no further than the query string.
    A subject the record query refuses (padded, not NFKC, ...) is refused here too (400,
    decision 0072): searching it would answer "nobody read it" for the person's reads,
    filed under the identifier's one spelling."""
    return EntryFilter(
        subject=keys.pseudonym(subject) if subject is not None else None,
        department=department,
        item=item,
        action=action,
        outcome=outcome,
        since=as_utc(since),
        until=as_utc(until),
    )


EntryFilterDep = Annotated[EntryFilter, Depends(_entry_filter)]
