"""Access rules: deny by default; a grant names consumer, item, purpose, fields and period.

Grants are made by approving an access request (:mod:`onceonly.hub.access.workflow`) or,
in bootstrap and emergencies, with the break-glass token (:func:`create_grant`).
"""

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from onceonly.hub.access import policy, repository
from onceonly.hub.access.exceptions import GrantNotActive, GrantNotFound, NoGrant, NotShared
from onceonly.hub.access.models import Grant
from onceonly.hub.access.purposes import purposes_for
from onceonly.hub.access.schemas import GrantIn, GrantList, GrantOut, RevokeIn
from onceonly.hub.audit.service import AuditScope
from onceonly.hub.auth.scopes import AUDIT_READ_SCOPE, publish_scope, read_scope
from onceonly.hub.config import Settings
from onceonly.hub.kit.clock import Clock, as_utc, aware
from onceonly.hub.kit.problems import InvalidRequest
from onceonly.hub.people.principal import Principal
from onceonly.hub.registry import service as registry


async def grant_for(
    session: AsyncSession, *, consumer: str, item: str, purpose: str, clock: Clock
) -> Grant:
    """The active grant that allows ``consumer`` to read ``item`` for ``purpose``, or NoGrant."""
    grant = await repository.active_grant(
        session, consumer=consumer, item=item, purpose=purpose, now=clock.now()
    )
    if grant is None:
        raise NoGrant(
            f"department {consumer!r} holds no active grant for {item!r} with purpose {purpose!r}"
        )
    return grant


async def scopes_for(session: AsyncSession, *, department: str, clock: Clock) -> frozenset[str]:
    """``read:`` for items under an active grant, ``publish:`` for items it owns, and
    ``audit:read`` (the hub's entries about the department's own requests)."""
    granted = await repository.granted_items(session, consumer=department, now=clock.now())
    owned = await repository.owned_items(session, owner=department)
    reads = frozenset(read_scope(item) for item in granted)
    return reads | frozenset(publish_scope(item) for item in owned) | {AUDIT_READ_SCOPE}


async def all_read_scopes(session: AsyncSession) -> list[str]:
    """The scopes a token can carry: reading and publishing changes of shared items."""
    shared = await repository.shared_item_ids(session)
    items = [read_scope(item) for item in shared] + [publish_scope(item) for item in shared]
    return [*items, AUDIT_READ_SCOPE]


def capped_until(asked: datetime | None, *, now: datetime, max_days: int) -> datetime | None:
    """A grant's end: what was asked, never later than ``max_days`` from ``now``
    (``grant_max_days``; 0: no maximum, development only). In UTC, as stored."""
    if max_days == 0:
        return as_utc(asked)
    latest = now + timedelta(days=max_days)
    return as_utc(latest if asked is None or asked > latest else asked)


def grant_status(row: Grant, now: datetime) -> str:
    """``revoked``, ``expired`` (valid_until has passed) or ``active``."""
    if row.status != "active":
        return row.status
    if row.valid_until is not None and aware(row.valid_until) <= now:
        return "expired"
    return "active"


def grant_out(row: Grant, *, owner: str | None, now: datetime) -> GrantOut:
    return GrantOut(
        id=row.id,
        consumer=row.consumer_id,
        owner=owner,
        item=row.item_id,
        purpose=row.purpose,
        legal_basis=row.legal_basis,
        fields=row.fields,
        version=row.version,
        valid_from=aware(row.valid_from),
        valid_until=aware(row.valid_until),
        status=grant_status(row, now),
        request_id=row.request_id,
        revoked_at=aware(row.revoked_at),
        revoked_by=row.revoked_by,
        revoke_reason=row.revoke_reason,
    )


def check_fields(fields: list[str] | None, schema: dict[str, object]) -> None:
    """Every named field is a top-level property of ``schema``."""
    if fields is None:
        return
    properties = schema.get("properties")
    known = set(properties) if isinstance(properties, dict) else set()
    unknown = sorted(set(fields) - known)
    if unknown:  # quoted: a name's control characters are escaped, never echoed
        named = ", ".join(repr(name[:64]) for name in unknown[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise InvalidRequest(f"fields not defined by the item's schema: {named}{more}")


async def create_grant(
    session: AsyncSession, *, body: GrantIn, settings: Settings, scope: AuditScope, clock: Clock
) -> GrantOut:
    """A break-glass grant, for at most ``grant_max_days``. Asking again for the same
    active grant returns it (without ``valid_until``: whatever its end)."""
    scope.note(department=body.consumer, item=body.item, purpose=body.purpose)
    purposes_for(settings).get(body.purpose)  # unknown-purpose, as an access request
    await registry.department(session, body.consumer)
    served = await registry.item_for_exchange(session, body.item)
    if served.item.sharing_class == "none":
        raise NotShared(f"data item {body.item!r} has sharing class 'none' and is never shared")
    check_fields(body.fields, served.version.schema_)
    # "All fields" means those of the version granted: a later version's new fields
    # are never delivered under this grant (docs/registry.md).
    fields = (
        sorted(body.fields)
        if body.fields is not None
        else registry.version_fields(served.version.schema_)
    )
    now = clock.now()
    if body.valid_until is not None and body.valid_until <= now:
        raise InvalidRequest("valid_until must lie in the future")
    until = capped_until(body.valid_until, now=now, max_days=settings.grant_max_days)
    existing = await repository.active_grant(
        session, consumer=body.consumer, item=body.item, purpose=body.purpose, now=now
    )
    if (
        existing is not None
        and existing.fields == fields
        and (body.valid_until is None or aware(existing.valid_until) == until)
        and existing.version == served.version.version
    ):
        grant = existing
    else:
        grant = Grant(
            consumer_id=body.consumer,
            item_id=body.item,
            purpose=body.purpose,
            legal_basis=body.legal_basis,
            fields=fields,
            valid_from=now,
            valid_until=until,
            version=served.version.version,
        )
        repository.add(session, grant)
        await session.flush()
    await scope.record_change(session, grant=grant.id, fields=grant.fields)
    return grant_out(grant, owner=served.item.owner_id, now=now)


async def list_grants(
    session: AsyncSession,
    *,
    principal: Principal,
    consumer: str | None = None,
    item: str | None = None,
    clock: Clock,
) -> GrantList:
    """The grants the principal may see: stewards those of their departments (as
    consumer or owner), auditors and break-glass all of them."""
    policy.require_reader(principal)
    where = repository.GrantFilter(
        departments=policy.visible_departments(principal), consumer=consumer, item=item
    )
    now = clock.now()
    rows = await repository.list_grants(session, where)
    return GrantList(grants=[grant_out(grant, owner=owner, now=now) for grant, owner in rows])


async def visible_grant(
    session: AsyncSession, principal: Principal, grant_id: str
) -> tuple[Grant, str]:
    found = await repository.get_grant(session, grant_id)
    if found is None or not policy.may_see(
        principal, consumer=found[0].consumer_id, owner=found[1]
    ):
        raise GrantNotFound(f"there is no grant {grant_id!r}")
    return found


async def get_grant(
    session: AsyncSession, *, principal: Principal, grant_id: str, clock: Clock
) -> GrantOut:
    policy.require_reader(principal)
    grant, owner = await visible_grant(session, principal, grant_id)
    return grant_out(grant, owner=owner, now=clock.now())


async def revoke(
    session: AsyncSession,
    *,
    principal: Principal,
    grant_id: str,
    body: RevokeIn,
    scope: AuditScope,
    clock: Clock,
) -> GrantOut:
    """A steward's revocation, effective on the next request on every replica.

    Compare-and-set: revoking a grant that is no longer active (twice, two stewards at
    once, or once it has expired) is refused with ``grant-not-active``, naming who
    revoked it and when, or when it ended.
    """
    policy.require_actor(principal)
    grant, owner = await visible_grant(session, principal, grant_id)
    _note_grant(scope, grant)
    policy.require_grant_party(principal, consumer=grant.consumer_id, owner=owner)
    now = clock.now()
    if grant_status(grant, now) != "active":
        raise GrantNotActive(_revoked_detail(grant, now))
    revoked = await repository.revoke_grant(
        session, grant_id=grant.id, at=now, by=principal.name, reason=body.reason
    )
    if not revoked:
        raise GrantNotActive(_revoked_detail(grant, now))
    await scope.record_change(session, reason=body.reason)
    found = await repository.get_grant(session, grant_id)
    assert found is not None  # updated in this transaction
    await session.refresh(found[0])
    return grant_out(found[0], owner=owner, now=now)


def _note_grant(scope: AuditScope, grant: Grant) -> None:
    scope.note(
        department=grant.consumer_id,
        item=grant.item_id,
        purpose=grant.purpose,
        grant=grant.id,
        target=grant.request_id,
    )


def _revoked_detail(grant: Grant, now: datetime) -> str:
    if grant_status(grant, now) == "expired" and grant.valid_until is not None:
        return f"grant {grant.id!r} expired at {_shown(grant.valid_until)}"
    if grant.revoked_at is None:
        return f"grant {grant.id!r} is no longer active"
    by = f" by {grant.revoked_by!r}" if grant.revoked_by else ""
    return f"grant {grant.id!r} was already revoked{by} at {_shown(grant.revoked_at)}"


def _shown(moment: datetime) -> str:
    """A time as the grant's JSON shows it (UTC, ``Z``), not as ``isoformat`` does."""
    return as_utc(moment).isoformat().replace("+00:00", "Z")


async def revoke_with_break_glass(
    session: AsyncSession,
    *,
    principal: Principal,
    grant_id: str,
    scope: AuditScope,
    clock: Clock,
) -> GrantOut:
    """The break-glass revocation (``/v1/admin/grants``): revoking twice, or a grant that
    has expired, changes nothing (the grant is answered as it is)."""
    found = await repository.get_grant(session, grant_id)
    if found is None:
        raise GrantNotFound(f"there is no grant {grant_id!r}")
    grant, owner = found
    _note_grant(scope, grant)
    now = clock.now()
    await repository.revoke_grant(
        session, grant_id=grant.id, at=now, by=principal.name, reason=None
    )
    await scope.record_change(session)
    await session.refresh(grant)
    return grant_out(grant, owner=owner, now=now)


async def list_all_grants(
    session: AsyncSession, *, consumer: str | None, clock: Clock
) -> GrantList:
    now = clock.now()
    rows = await repository.list_grants(session, repository.GrantFilter(consumer=consumer))
    return GrantList(grants=[grant_out(grant, owner=owner, now=now) for grant, owner in rows])
