"""All SQL of change events: the outbox, deliveries, subscriptions."""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import uuid4

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from onceonly.hub.access.models import Grant
from onceonly.hub.access.repository import after, at_or_before
from onceonly.hub.events.models import Delivery, Event, Subscription
from onceonly.hub.registry.models import Department, Item

_events = Event.__table__  # type: ignore[attr-defined]
_deliveries = Delivery.__table__  # type: ignore[attr-defined]
_subscriptions = Subscription.__table__  # type: ignore[attr-defined]
_grants = Grant.__table__  # type: ignore[attr-defined]
_departments = Department.__table__  # type: ignore[attr-defined]
_items = Item.__table__  # type: ignore[attr-defined]


def _covers(grants: Any, department: Any, item: Any, moment: Any) -> Any:
    """A grant of ``department`` for ``item`` was in force at ``moment``: valid then,
    and not revoked by then (a revoked grant's end is its ``revoked_at``). Times are
    compared as the record query's are (``access.repository.after``: on SQLite, a time
    written by hand in another spelling is read as a time, not as text)."""
    return sa.and_(
        grants.c.consumer_id == department,
        grants.c.item_id == item,
        at_or_before(grants.c.valid_from, moment),
        sa.or_(grants.c.valid_until.is_(None), after(grants.c.valid_until, moment)),
        sa.or_(grants.c.status == "active", after(grants.c.revoked_at, moment)),
    )


def _uncovered_end(end: str, department: Any, item: Any, since: Any, now: Any) -> Any:
    """Some grant of the department for the item ended (its ``end`` column) after
    ``since`` and by ``now``, at a moment when no grant of it was in force."""
    ended, cover = _grants.alias("ended"), _grants.alias("cover")
    moment = ended.c[end]
    return sa.exists().where(
        ended.c.consumer_id == department,
        ended.c.item_id == item,
        after(moment, since),
        at_or_before(moment, now),
        ~sa.exists().where(_covers(cover, department, item, moment)),
    )


def _entitled_since(department: Any, item: Any, since: Any, now: datetime) -> Any:
    """The department holds an active grant for the item now, and has held one without
    a break since ``since``. A break can only begin where a grant ends (its
    ``valid_until`` or ``revoked_at``), so only those moments are looked at: a
    revocation followed by a later grant, for any purpose, is a break (decision 0060)."""
    return sa.and_(
        sa.exists().where(_covers(_grants, department, item, now)),
        ~_uncovered_end("valid_until", department, item, since, now),
        ~_uncovered_end("revoked_at", department, item, since, now),
    )


@dataclass(frozen=True)
class Subscriber:
    """A subscription to an item, and whether its department's grants have entitled it
    without a break since it was made (its ``created_at``)."""

    department: str
    granted: bool


async def subscribers(session: AsyncSession, *, item_id: str, now: datetime) -> list[Subscriber]:
    """The departments subscribed to ``item_id``, each with whether its grant holds."""
    granted = _entitled_since(
        _subscriptions.c.department_id, item_id, _subscriptions.c.created_at, now
    )
    query = (
        sa.select(_subscriptions.c.department_id.label("department"), granted.label("granted"))
        .where(_subscriptions.c.item_id == item_id)
        .order_by(_subscriptions.c.department_id)
    )
    rows = (await session.execute(query)).all()
    return [Subscriber(department=row.department, granted=bool(row.granted)) for row in rows]


async def entitled_since(
    session: AsyncSession, *, department: str, item_id: str, since: datetime, now: datetime
) -> bool:
    """Whether ``department`` has held an active grant for ``item_id`` without a break
    from ``since`` until ``now`` (``since`` = ``now``: whether it holds one now)."""
    query = sa.select(_entitled_since(department, item_id, since, now))
    return bool((await session.execute(query)).scalar())


def _insert_new_key(dialect: str) -> Any:
    """INSERT that does nothing when the publisher's idempotency key is taken. On
    PostgreSQL a publish under way with the same key is waited for: if it commits,
    this one inserts nothing; if it rolls back, this one inserts."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(_events)
        .on_conflict_do_nothing(index_elements=["owner_id", "idempotency_key"])
        .returning(_events.c.id)  # psycopg's rowcount of such an INSERT is -1
    )


async def insert_event(
    session: AsyncSession, *, event: dict[str, Any], departments: list[str]
) -> bool:
    """Store the event and its deliveries; False (nothing stored) when its owner already
    published an event under the same idempotency key."""
    dialect = (await session.connection()).dialect.name
    result = await session.execute(_insert_new_key(dialect).values(**event))
    if result.first() is None:
        return False
    if departments:
        rows = [
            {
                "id": uuid4().hex,
                "event_id": event["id"],
                "department_id": department,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": event["published_at"],
            }
            for department in departments
        ]
        await session.execute(sa.insert(_deliveries), rows)
    return True


async def set_audit_index(session: AsyncSession, *, event_id: str, index: int) -> None:
    await session.execute(
        sa.update(_events).where(_events.c.id == event_id).values(audit_index=index)
    )


@dataclass(frozen=True)
class KeyedEvent:
    """An event published under an idempotency key, as a repeat of its publish sees it."""

    id: str
    item_id: str
    kind: str
    subject_pseudonym: str
    audit_index: int | None
    subscribers: int


async def event_with_key(session: AsyncSession, *, owner: str, key: str) -> KeyedEvent | None:
    subscribers = (
        sa.select(sa.func.count())
        .where(_deliveries.c.event_id == _events.c.id)
        .scalar_subquery()
        .label("subscribers")
    )
    query = sa.select(
        _events.c.id,
        _events.c.item_id,
        _events.c.kind,
        _events.c.subject_pseudonym,
        _events.c.audit_index,
        subscribers,
    ).where(_events.c.owner_id == owner, _events.c.idempotency_key == key)
    row = (await session.execute(query)).first()
    return None if row is None else KeyedEvent(**row._asdict())


async def get_subscription(
    session: AsyncSession, *, department: str, item_id: str
) -> Subscription | None:
    return await session.get(Subscription, (department, item_id))


def add(session: AsyncSession, row: Subscription) -> None:
    session.add(row)


async def delete_subscription(session: AsyncSession, *, department: str, item_id: str) -> bool:
    result = await session.execute(
        sa.delete(_subscriptions).where(
            _subscriptions.c.department_id == department, _subscriptions.c.item_id == item_id
        )
    )
    return bool(getattr(result, "rowcount", 0))


@dataclass(frozen=True)
class DueDelivery:
    """A delivery claimed by this process until ``lease_until``."""

    id: str
    lease_token: str
    attempts: int
    event_id: str
    item_id: str
    owner_id: str
    kind: str
    subject: str | None
    subject_pseudonym: str
    published_at: datetime
    department_id: str
    adapter_url: str | None
    lifecycle: str  # the item's, now
    sharing_class: str  # the item's, now
    granted: bool  # the subscriber held a grant without a break since the event
    subscribed_at: datetime | None  # when the subscriber subscribed; None: it is not


def _due(now: datetime, limit: int, dialect: str, *, excluded: Collection[str] = ()) -> Any:
    """Due deliveries not leased (ids and departments), the longest due first, but none
    of the ``excluded`` departments'."""
    query = (
        sa.select(_deliveries.c.id, _deliveries.c.department_id)
        .where(_deliveries.c.status == "pending", _deliveries.c.next_attempt_at <= now)
        .where(sa.or_(_deliveries.c.lease_until.is_(None), _deliveries.c.lease_until < now))
        .order_by(_deliveries.c.next_attempt_at)
        .limit(limit)
    )
    if excluded:
        query = query.where(_deliveries.c.department_id.not_in(sorted(excluded)))
    if dialect == "postgresql":  # replicas take disjoint batches without waiting
        query = query.with_for_update(skip_locked=True)
    return query


async def any_due(conn: AsyncConnection, *, now: datetime, excluded: Collection[str] = ()) -> bool:
    """Whether a delivery is due now (for a department not ``excluded``), read without
    taking a lock: the deliverer looks before it claims, so that an idle round (every
    ``event_poll_interval``) does not take SQLite's write lock, which the exchange's
    group commits wait for."""
    query = sa.select(_due(now, 1, "", excluded=excluded).exists())
    return bool((await conn.execute(query)).scalar())


async def due_candidates(
    conn: AsyncConnection, *, now: datetime, limit: int, excluded: Collection[str]
) -> list[tuple[str, str]]:
    """Up to ``limit`` due deliveries (id, department), none of the ``excluded``
    departments', the longest due first; on PostgreSQL locked until the caller's write
    transaction ends (others skip them), so that it may lease some of them."""
    query = _due(now, limit, conn.dialect.name, excluded=excluded)
    return [(row.id, row.department_id) for row in (await conn.execute(query)).all()]


def _subscribed_at() -> Any:
    """When the delivery's department subscribed to the event's item, NULL if it is not
    subscribed (a subscription made again after an unsubscription has its new time). The
    deliverer judges it against the event's time (``delivery.entitlement``): the two
    may come from two hub processes' clocks."""
    return (
        sa.select(_subscriptions.c.created_at)
        .where(
            _subscriptions.c.department_id == _deliveries.c.department_id,
            _subscriptions.c.item_id == _events.c.item_id,
        )
        .scalar_subquery()
    )


async def lease(
    conn: AsyncConnection, *, ids: list[str], now: datetime, lease_until: datetime, token: str
) -> list[DueDelivery]:
    """Lease the deliveries ``ids`` to this process (in the caller's write transaction,
    which found them due), with the facts their attempt is judged by."""
    if not ids:
        return []
    await conn.execute(
        sa.update(_deliveries)
        .where(_deliveries.c.id.in_(ids))
        .values(lease_until=lease_until, lease_token=token)
    )
    query = (
        sa.select(
            _deliveries.c.id,
            _deliveries.c.attempts,
            _deliveries.c.department_id,
            _events.c.id.label("event_id"),
            _events.c.item_id,
            _events.c.owner_id,
            _events.c.kind,
            _events.c.subject,
            _events.c.subject_pseudonym,
            _events.c.published_at,
            _departments.c.adapter_url,
            _items.c.lifecycle,
            _items.c.sharing_class,
            _entitled_since(
                _deliveries.c.department_id, _events.c.item_id, _events.c.published_at, now
            ).label("granted"),
            _subscribed_at().label("subscribed_at"),
        )
        .join(_events, _events.c.id == _deliveries.c.event_id)
        .join(_items, _items.c.id == _events.c.item_id)
        .join(_departments, _departments.c.id == _deliveries.c.department_id)
        .where(_deliveries.c.id.in_(ids))
    )
    rows = (await conn.execute(query)).all()
    return [DueDelivery(lease_token=token, **row._asdict()) for row in rows]


async def settle(conn: AsyncConnection, *, delivery: DueDelivery, values: dict[str, Any]) -> bool:
    """Record the outcome of a delivery, unless this process's lease was lost meanwhile."""
    result = await conn.execute(
        sa.update(_deliveries)
        .where(_deliveries.c.id == delivery.id, _deliveries.c.lease_token == delivery.lease_token)
        .values(lease_until=None, lease_token=None, **values)
    )
    return bool(getattr(result, "rowcount", 0))


async def release_leases(conn: AsyncConnection, *, tokens: list[str]) -> None:
    """Give back deliveries this process leased but did not settle (it is stopping)."""
    await conn.execute(
        sa.update(_deliveries)
        .where(_deliveries.c.lease_token.in_(tokens), _deliveries.c.status == "pending")
        .values(lease_until=None, lease_token=None)
    )


async def forget_subject_when_done(conn: AsyncConnection, *, event_id: str) -> None:
    """Erase the raw subject once no delivery of the event can need it any more: none
    is pending, and none is a dead letter (which a replay would send again)."""
    unfinished = sa.exists().where(
        _deliveries.c.event_id == event_id, _deliveries.c.status.in_(("pending", "dead"))
    )
    await conn.execute(
        sa.update(_events).where(_events.c.id == event_id, ~unfinished).values(subject=None)
    )


async def list_deliveries(
    session: AsyncSession, *, status: str, limit: int
) -> list[dict[str, Any]]:
    query = (
        sa.select(
            _deliveries.c.id,
            _deliveries.c.event_id,
            _events.c.item_id.label("item"),
            _deliveries.c.department_id.label("department"),
            _events.c.kind,
            _deliveries.c.status,
            _deliveries.c.attempts,
            _deliveries.c.last_error,
            _deliveries.c.next_attempt_at,
        )
        .join(_events, _events.c.id == _deliveries.c.event_id)
        .where(_deliveries.c.status == status)
        .order_by(_deliveries.c.next_attempt_at)
        .limit(limit)
    )
    return [dict(row._asdict()) for row in (await session.execute(query)).all()]


async def requeue(
    session: AsyncSession, *, delivery_id: str, now: datetime
) -> dict[str, Any] | None:
    """Put a dead letter back in the queue, due now; None if there is no such dead letter."""
    result = await session.execute(
        sa.update(_deliveries)
        .where(_deliveries.c.id == delivery_id, _deliveries.c.status == "dead")
        .values(
            status="pending", next_attempt_at=now, attempts=0, lease_until=None, lease_token=None
        )
    )
    if not getattr(result, "rowcount", 0):
        return None
    row = (
        await session.execute(
            sa.select(
                _deliveries.c.event_id,
                _deliveries.c.department_id,
                _events.c.item_id,
                _events.c.subject_pseudonym,
            )
            .join(_events, _events.c.id == _deliveries.c.event_id)
            .where(_deliveries.c.id == delivery_id)
        )
    ).first()
    return dict(row._asdict()) if row else None
