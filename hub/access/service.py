"""Access rules: deny by default; a grant names consumer, item, purpose, fields and period."""

from sqlalchemy.ext.asyncio import AsyncSession

from hub.access import repository
from hub.access.exceptions import GrantNotFound, NoGrant, NotShared
from hub.access.models import Grant
from hub.access.schemas import GrantIn, GrantList, GrantOut
from hub.audit.service import AuditScope
from hub.errors import InvalidRequest
from hub.kit.clock import utcnow
from hub.registry import service as registry

READ_SCOPE_PREFIX = "read:"
PUBLISH_SCOPE_PREFIX = "publish:"
AUDIT_READ_SCOPE = "audit:read"


def read_scope(item_id: str) -> str:
    return READ_SCOPE_PREFIX + item_id


async def grant_for(session: AsyncSession, *, consumer: str, item: str, purpose: str) -> Grant:
    """The active grant that allows ``consumer`` to read ``item`` for ``purpose``, or NoGrant."""
    grant = await repository.active_grant(
        session, consumer=consumer, item=item, purpose=purpose, now=utcnow()
    )
    if grant is None:
        raise NoGrant(
            f"department {consumer!r} holds no active grant for {item!r} with purpose {purpose!r}"
        )
    return grant


def publish_scope(item_id: str) -> str:
    return PUBLISH_SCOPE_PREFIX + item_id


async def scopes_for(session: AsyncSession, *, department: str) -> frozenset[str]:
    """``read:`` for items under an active grant, ``publish:`` for items it owns, and
    ``audit:read`` (the hub's entries about the department's own requests)."""
    granted = await repository.granted_items(session, consumer=department, now=utcnow())
    owned = await repository.owned_items(session, owner=department)
    reads = frozenset(read_scope(item) for item in granted)
    return reads | frozenset(publish_scope(item) for item in owned) | {AUDIT_READ_SCOPE}


async def all_read_scopes(session: AsyncSession) -> list[str]:
    """The scopes a token can carry: reading and publishing changes of shared items."""
    shared = await repository.shared_item_ids(session)
    items = [read_scope(item) for item in shared] + [publish_scope(item) for item in shared]
    return [*items, AUDIT_READ_SCOPE]


def _grant_out(row: Grant) -> GrantOut:
    return GrantOut(
        id=row.id,
        consumer=row.consumer_id,
        item=row.item_id,
        purpose=row.purpose,
        legal_basis=row.legal_basis,
        fields=row.fields,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        status=row.status,
    )


async def create_grant(session: AsyncSession, *, body: GrantIn, scope: AuditScope) -> GrantOut:
    """An administrator's grant. Asking again for the same active grant returns it."""
    scope.note(department=body.consumer, item=body.item, purpose=body.purpose)
    await registry.department(session, body.consumer)
    served = await registry.item_for_exchange(session, body.item)
    if served.item.sharing_class == "none":
        raise NotShared(f"data item {body.item!r} has sharing class 'none' and is never shared")
    _check_fields(body.fields, served.version.schema_)
    # "All fields" means those of the version granted: a later version's new fields
    # are never delivered under this grant (docs/registry.md).
    fields = (
        sorted(body.fields)
        if body.fields is not None
        else registry.version_fields(served.version.schema_)
    )
    now = utcnow()
    if body.valid_until is not None and body.valid_until <= now:
        raise InvalidRequest("valid_until must lie in the future")
    existing = await repository.active_grant(
        session, consumer=body.consumer, item=body.item, purpose=body.purpose, now=now
    )
    if (
        existing is not None
        and existing.fields == fields
        and existing.valid_until == body.valid_until
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
            valid_until=body.valid_until,
        )
        repository.add(session, grant)
        await session.flush()
    await scope.record_change(session, grant=grant.id, fields=grant.fields)
    return _grant_out(grant)


def _check_fields(fields: list[str] | None, schema: dict[str, object]) -> None:
    if fields is None:
        return
    properties = schema.get("properties")
    known = set(properties) if isinstance(properties, dict) else set()
    unknown = sorted(set(fields) - known)
    if unknown:
        raise InvalidRequest(f"fields not defined by the item's schema: {', '.join(unknown)}")


async def list_grants(session: AsyncSession, *, consumer: str | None) -> GrantList:
    return GrantList(
        grants=[_grant_out(g) for g in await repository.list_grants(session, consumer=consumer)]
    )


async def revoke_grant(session: AsyncSession, *, grant_id: str, scope: AuditScope) -> GrantOut:
    """Revoke at once: the next request that would use the grant is refused."""
    grant = await repository.get_grant(session, grant_id)
    if grant is None:
        raise GrantNotFound(f"there is no grant {grant_id!r}")
    scope.note(department=grant.consumer_id, item=grant.item_id, grant=grant.id)
    if grant.status == "active":
        grant.status, grant.revoked_at = "revoked", utcnow()
        await session.flush()
    await scope.record_change(session)
    return _grant_out(grant)
