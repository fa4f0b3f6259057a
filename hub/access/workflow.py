"""Access requests: a consumer department asks, the owner department decides.

::

    pending ──approve──▶ approved (a grant is made, linked both ways)
       │ ────refuse───▶ refused  (with the owner's reason)
       └────withdraw──▶ withdrawn (by the consumer)

Every state is final but ``pending``. A request for an ``unconditional`` item is
approved at once by the hub; one for a ``none`` item is refused with
``item-not-shared``. Every change is compare-and-set on ``status = 'pending'``
(:func:`onceonly.hub.access.repository.settle_request`): of two decisions that race, exactly
one wins and the other is refused with ``request-not-pending`` naming the state the
first one left. Who may do what: :mod:`onceonly.hub.access.policy`.
"""

from dataclasses import dataclass
from datetime import datetime
from functools import partial
from uuid import uuid4

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from onceonly.hub.access import policy, repository, service
from onceonly.hub.access.deadlines import add_working_days
from onceonly.hub.access.exceptions import (
    DuplicateRequest,
    GrantNotActive,
    NotShared,
    RequestNotFound,
    RequestNotPending,
)
from onceonly.hub.access.models import AccessRequest, Grant
from onceonly.hub.access.purposes import purposes_for
from onceonly.hub.access.schemas import (
    AccessRequestIn,
    AccessRequestList,
    AccessRequestOut,
    ApproveIn,
    Box,
    Decision,
    RefuseIn,
    RenewIn,
    RequestStatus,
)
from onceonly.hub.access.service import capped_until, check_fields
from onceonly.hub.audit.service import AuditScope
from onceonly.hub.config import Settings
from onceonly.hub.kit.after_commit import on_commit
from onceonly.hub.kit.clock import Clock, as_utc, aware
from onceonly.hub.kit.problems import InvalidRequest
from onceonly.hub.metrics import access_decided
from onceonly.hub.people.principal import Principal
from onceonly.hub.registry import service as registry
from onceonly.hub.registry.exceptions import ItemRetired, UnknownItem
from onceonly.hub.registry.models import Item, ItemVersion

HUB_DECIDER = "hub"
UNCONDITIONAL_REASON = "unconditional item"
LIST_LIMIT = 1000


@dataclass(frozen=True)
class RequestQuery:
    """A listing's filters. ``box``: ``inbox`` (requests to ``department``, or to the
    departments one stewards) or ``outbox`` (requests from them)."""

    status: RequestStatus | None = None
    box: Box | None = None
    department: str | None = None
    item: str | None = None
    overdue: bool | None = None


def default_fields(version: ItemVersion) -> list[str]:
    """What a request that names no fields asks for: the version's fields that are not
    personal. Personal fields are granted only when a request names them one by one."""
    personal = set(version.personal_fields)
    return [name for name in registry.version_fields(version.schema_) if name not in personal]


def requested_fields(row: AccessRequest, version: ItemVersion) -> list[str]:
    """The fields asked for, spelled out (none named: :func:`default_fields`)."""
    return list(row.fields) if row.fields is not None else default_fields(version)


def request_out(row: AccessRequest, version: ItemVersion, now: datetime) -> AccessRequestOut:
    fields = requested_fields(row, version)
    personal = set(version.personal_fields)
    decision = None
    if row.decided_by is not None and row.decided_at is not None:
        decision = Decision(
            by=row.decided_by,
            at=aware(row.decided_at),
            reason=row.reason,
            fields=row.granted_fields,
            valid_until=aware(row.granted_until),
        )
    answer_due = aware(row.answer_due)
    return AccessRequestOut(
        id=row.id,
        consumer=row.consumer_id,
        owner=row.owner_id,
        item=row.item_id,
        version=row.version,
        purpose=row.purpose,
        purpose_text=row.purpose_text,
        legal_basis=row.legal_basis,
        fields=row.fields,
        requested_fields=fields,
        personal_fields=[name for name in fields if name in personal],
        valid_from=aware(row.valid_from),
        valid_until=aware(row.valid_until),
        status=row.status,
        requested_by=row.requested_by,
        requested_at=aware(row.requested_at),
        answer_due=answer_due,
        overdue=row.status == "pending" and answer_due < now,
        decision=decision,
        grant_id=row.grant_id,
    )


async def _version(session: AsyncSession, row: AccessRequest) -> ItemVersion:
    version = await repository.get_version(session, row.item_id, row.version)
    if version is None:  # versions are never deleted; a broken database is a 500
        raise RuntimeError(f"item {row.item_id} has no version {row.version}")
    return version


async def _requestable(
    session: AsyncSession, body: AccessRequestIn
) -> tuple[Item, ItemVersion, list[str] | None]:
    """The item, locked, if a department other than its owner may ask for it; its
    current version; the fields asked for (``"all"`` spelled out, None: none named)."""
    item = await repository.item_for_request(session, body.item)
    if item is None:
        raise UnknownItem(f"there is no data item {body.item!r}")
    if item.lifecycle == "retired":
        raise ItemRetired(f"data item {body.item!r} is retired and no longer served")
    if item.sharing_class == "none":
        raise NotShared(f"data item {body.item!r} has sharing class 'none' and is never shared")
    if item.owner_id == body.consumer:
        raise InvalidRequest(f"{body.consumer!r} owns {body.item!r}; it needs no access request")
    version = await repository.get_version(session, item.id, item.latest_version)
    if version is None:
        raise RuntimeError(f"item {item.id} has no version {item.latest_version}")
    if body.fields == "all":
        return item, version, registry.version_fields(version.schema_)
    check_fields(body.fields, version.schema_)
    if body.fields is None and not default_fields(version):
        raise InvalidRequest(
            f"every field of {body.item!r} is personal: name the fields needed "
            f'({", ".join(version.personal_fields)}), or ask for "all"'
        )
    return item, version, body.fields


async def request_access(
    session: AsyncSession,
    *,
    principal: Principal,
    body: AccessRequestIn,
    settings: Settings,
    scope: AuditScope,
    clock: Clock,
) -> AccessRequestOut:
    """File a request (see the module's docstring for what happens next)."""
    policy.require_actor(principal)
    named = body.fields if isinstance(body.fields, list) else None
    scope.note(department=body.consumer, item=body.item, purpose=body.purpose, fields=named)
    policy.require_consumer_steward(principal, body.consumer)
    purposes_for(settings).get(body.purpose)
    await registry.department(session, body.consumer)
    item, version, asked = await _requestable(session, body)
    now = clock.now()
    if body.valid_until is not None and body.valid_until <= now:
        raise InvalidRequest("valid_until must lie in the future")
    await _refuse_duplicate(session, body)
    row = AccessRequest(
        consumer_id=body.consumer,
        owner_id=item.owner_id,
        item_id=item.id,
        version=version.version,
        purpose=body.purpose,
        purpose_text=body.purpose_text,
        legal_basis=body.legal_basis,
        fields=sorted(set(asked)) if asked is not None else None,
        valid_from=now,
        valid_until=as_utc(body.valid_until),
        requested_by=principal.name,
        requested_at=now,
        answer_due=add_working_days(now, settings.answer_working_days, settings.holidays),
    )
    repository.add(session, row)
    if item.sharing_class == "unconditional":
        until = capped_until(row.valid_until, now=now, max_days=settings.grant_max_days)
        grant = _grant(row, fields=requested_fields(row, version), until=until, now=now)
        _settle_in_memory(row, grant)
        repository.add(session, grant)
    try:
        await session.flush()
    except IntegrityError:  # the database's own guard (uq_access_requests_pending)
        raise DuplicateRequest(
            "a request for the same item and purpose is pending already"
        ) from None
    made = {"grant": row.grant_id} if row.grant_id else {}  # a renewal notes the old grant
    await scope.record_change(session, target=row.id, fields=requested_fields(row, version), **made)
    return request_out(row, version, now)


async def renew(
    session: AsyncSession,
    *,
    principal: Principal,
    grant_id: str,
    body: RenewIn,
    settings: Settings,
    scope: AuditScope,
    clock: Clock,
) -> AccessRequestOut:
    """Ask, before a grant expires, for a new one: an access request for the same item,
    purpose, legal basis and fields, which the owner decides like any other. The old
    grant runs until its own end; the audit entry names it (``grant``) and the new
    request (``target``)."""
    policy.require_actor(principal)
    grant, _ = await service.visible_grant(session, principal, grant_id)
    scope.note(grant=grant.id)
    policy.require_consumer_steward(principal, grant.consumer_id)
    status = service.grant_status(grant, clock.now())
    if status != "active":
        raise GrantNotActive(f"grant {grant.id!r} is {status}; ask with a new access request")
    return await request_access(
        session,
        principal=principal,
        body=await _renewal(session, grant, body),
        settings=settings,
        scope=scope,
        clock=clock,
    )


async def _renewal(session: AsyncSession, grant: Grant, body: RenewIn) -> AccessRequestIn:
    """The request a renewal files: the grant's terms, the first request's words."""
    first = await repository.get_request(session, grant.request_id) if grant.request_id else None
    words = first.purpose_text if first is not None and first.purpose_text else None
    return AccessRequestIn(
        consumer=grant.consumer_id,
        item=grant.item_id,
        purpose=grant.purpose,
        purpose_text=body.purpose_text or words or f"renewal of grant {grant.id}",
        legal_basis=grant.legal_basis or "as in the grant it renews",
        fields=list(grant.fields) if grant.fields is not None else "all",
        valid_until=body.valid_until,
    )


async def _refuse_duplicate(session: AsyncSession, body: AccessRequestIn) -> None:
    existing = await repository.pending_request(
        session, consumer=body.consumer, item=body.item, purpose=body.purpose
    )
    if existing is not None:
        raise DuplicateRequest(
            f"request {existing.id} for the same item and purpose is pending",
            extra={"existing": existing.id},
        )


def _grant(
    row: AccessRequest, *, fields: list[str], until: datetime | None, now: datetime
) -> Grant:
    return Grant(
        id=uuid4().hex,
        consumer_id=row.consumer_id,
        item_id=row.item_id,
        purpose=row.purpose,
        legal_basis=row.legal_basis,
        fields=fields,
        valid_from=now,
        valid_until=until,
        request_id=row.id,
        version=row.version,
    )


def _settle_in_memory(row: AccessRequest, grant: Grant) -> None:
    """The hub's own approval of a request for an unconditional item (a new row)."""
    row.status, row.decided_by, row.decided_at = "approved", HUB_DECIDER, grant.valid_from
    row.reason, row.grant_id = UNCONDITIONAL_REASON, grant.id
    row.granted_fields, row.granted_until = grant.fields, grant.valid_until


async def list_requests(
    session: AsyncSession, *, principal: Principal, query: RequestQuery, clock: Clock
) -> AccessRequestList:
    """The requests the principal may see (never the others), filtered by ``query``."""
    policy.require_reader(principal)
    visible = policy.visible_departments(principal)
    now = clock.now()
    where = repository.RequestFilter(
        visible_to=visible,
        department=query.department,
        item=query.item,
        status=query.status,
        overdue_at=now if query.overdue else None,
        **_box(query, visible),
    )
    rows = await repository.list_requests(session, where, limit=LIST_LIMIT)
    if query.overdue is False:
        rows = [r for r in rows if not (r.status == "pending" and aware(r.answer_due) < now)]
    versions = await repository.versions(session, {(r.item_id, r.version) for r in rows})
    return AccessRequestList(
        requests=[request_out(r, versions[(r.item_id, r.version)], now) for r in rows]
    )


def _box(query: RequestQuery, visible: frozenset[str] | None) -> dict[str, frozenset[str]]:
    if query.box is None:
        return {}
    mine = frozenset({query.department}) if query.department is not None else visible
    if mine is None:
        raise InvalidRequest("box needs a department for auditors and the break-glass token")
    return {"owners": mine} if query.box == "inbox" else {"consumers": mine}


async def _visible_request(
    session: AsyncSession, principal: Principal, request_id: str
) -> AccessRequest:
    row = await repository.get_request(session, request_id)
    if row is None or not policy.may_see(principal, consumer=row.consumer_id, owner=row.owner_id):
        raise RequestNotFound(f"there is no access request {request_id!r}")
    return row


async def get_request(
    session: AsyncSession, *, principal: Principal, request_id: str, clock: Clock
) -> AccessRequestOut:
    policy.require_reader(principal)
    row = await _visible_request(session, principal, request_id)
    return request_out(row, await _version(session, row), clock.now())


def _note(scope: AuditScope, row: AccessRequest) -> None:
    scope.note(department=row.consumer_id, item=row.item_id, purpose=row.purpose)


async def _not_pending(session: AsyncSession, row: AccessRequest) -> RequestNotPending:
    """The refusal of a change that lost the race (or came after the decision)."""
    await session.refresh(row)
    by = f" by {row.decided_by!r}" if row.decided_by else ""
    return RequestNotPending(
        f"access request {row.id} is {row.status}{by}; only a pending request changes",
        extra={"state": row.status},
    )


async def _pending(
    session: AsyncSession, principal: Principal, request_id: str, scope: AuditScope
) -> AccessRequest:
    scope.note(target=request_id)  # first: a role that may not act is refused with it
    policy.require_actor(principal)
    row = await _visible_request(session, principal, request_id)
    _note(scope, row)
    return row


def _approved_fields(body: ApproveIn, requested: list[str]) -> list[str]:
    if body.fields is None:
        return requested
    extra = sorted(set(body.fields) - set(requested))
    if extra:
        raise InvalidRequest(f"fields that were not requested: {', '.join(extra)}")
    return sorted(set(body.fields))


def _approved_until(
    body: ApproveIn, row: AccessRequest, *, now: datetime, max_days: int
) -> datetime | None:
    """What was asked or less, and never more than ``grant_max_days`` from now."""
    asked = aware(row.valid_until)
    if body.valid_until is not None and asked is not None and body.valid_until > asked:
        raise InvalidRequest(f"valid_until must not be later than requested ({asked.isoformat()})")
    until = body.valid_until or asked
    if until is not None and until <= now:
        raise InvalidRequest("valid_until must lie in the future")
    return capped_until(until, now=now, max_days=max_days)


async def approve(
    session: AsyncSession,
    *,
    principal: Principal,
    request_id: str,
    body: ApproveIn,
    settings: Settings,
    scope: AuditScope,
    clock: Clock,
) -> AccessRequestOut:
    """Approve, with the requested fields or fewer and the requested period or shorter
    (and never longer than ``grant_max_days``)."""
    row = await _pending(session, principal, request_id, scope)
    policy.require_decider(principal, row)
    if row.status != "pending":
        raise await _not_pending(session, row)
    served = await registry.item_for_exchange(session, row.item_id)
    if served.item.sharing_class == "none":
        raise NotShared(f"data item {row.item_id!r} is no longer shared")
    version = await _version(session, row)
    now = clock.now()
    fields = _approved_fields(body, requested_fields(row, version))
    until = _approved_until(body, row, now=now, max_days=settings.grant_max_days)
    grant = _grant(row, fields=fields, until=until, now=now)
    settled = await repository.settle_request(
        session,
        request_id=row.id,
        status="approved",
        decided_by=principal.name,
        decided_at=now,
        reason=body.reason,
        granted_fields=grant.fields,
        granted_until=grant.valid_until,
        grant_id=grant.id,
    )
    if not settled:
        raise await _not_pending(session, row)
    repository.add(session, grant)
    await session.flush()
    await scope.record_change(session, grant=grant.id, fields=grant.fields, reason=body.reason)
    _count_decision(session, row, decision="approved", now=now)
    await session.refresh(row)
    return request_out(row, version, now)


async def refuse(
    session: AsyncSession,
    *,
    principal: Principal,
    request_id: str,
    body: RefuseIn,
    scope: AuditScope,
    clock: Clock,
) -> AccessRequestOut:
    row = await _pending(session, principal, request_id, scope)
    policy.require_decider(principal, row)
    return await _settle(
        session,
        row,
        status="refused",
        by=principal.name,
        reason=body.reason,
        scope=scope,
        clock=clock,
    )


async def withdraw(
    session: AsyncSession, *, principal: Principal, request_id: str, scope: AuditScope, clock: Clock
) -> AccessRequestOut:
    row = await _pending(session, principal, request_id, scope)
    policy.require_consumer_steward(principal, row.consumer_id)
    return await _settle(
        session, row, status="withdrawn", by=principal.name, reason=None, scope=scope, clock=clock
    )


async def _settle(
    session: AsyncSession,
    row: AccessRequest,
    *,
    status: str,
    by: str,
    reason: str | None,
    scope: AuditScope,
    clock: Clock,
) -> AccessRequestOut:
    """End a pending request without a grant (refused or withdrawn)."""
    if row.status != "pending":
        raise await _not_pending(session, row)
    now = clock.now()
    settled = await repository.settle_request(
        session, request_id=row.id, status=status, decided_by=by, decided_at=now, reason=reason
    )
    if not settled:
        raise await _not_pending(session, row)
    await scope.record_change(session, reason=reason)
    if status == "refused":
        _count_decision(session, row, decision="refused", now=now)
    await session.refresh(row)
    return request_out(row, await _version(session, row), now)


def _count_decision(
    session: AsyncSession, row: AccessRequest, *, decision: str, now: datetime
) -> None:
    """An owner's decision, in the metrics once it has committed (a withdrawal is none)."""
    counted = partial(  # the row's values read now: they are expired once it commits
        access_decided,
        owner=row.owner_id,
        decision=decision,
        requested=aware(row.requested_at),
        due=aware(row.answer_due),
        decided=now,
    )
    on_commit(session, counted)
