"""All SQL of grants and access requests.

State changes of a request or a grant are compare-and-set (``UPDATE … WHERE id = :id
AND status = :expected``): of two transactions that race, the second one's update
matches no row (PostgreSQL re-reads the row after the first commits; SQLite's
writers are serialized), and the caller learns it from the row count.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal
from sqlmodel import col, select

from onceonly.hub.access.models import AccessRequest, Grant
from onceonly.hub.registry.models import Item, ItemVersion

Time = sa.ColumnElement[Any] | Mapped[Any]  # a grant's valid_from or valid_until
Moment = sa.ColumnElement[Any] | datetime


class _TimeComparison(sa.ColumnElement[bool]):
    """``time > moment`` or ``time <= moment``, for a grant's ``valid_from`` and
    ``valid_until`` (see :func:`after`)."""

    inherit_cache = True
    type = sa.Boolean()
    _is_implicitly_boolean = True  # a comparison: never written as "(…) = 1" on SQLite
    _traverse_internals = [  # noqa: RUF012 (SQLAlchemy's own declaration)
        ("time", InternalTraversal.dp_clauseelement),
        ("operator", InternalTraversal.dp_string),
        ("moment", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, time: Time, operator: str, moment: Moment) -> None:
        self.time = sa.type_coerce(time, sa.DateTime(timezone=True))
        self.operator = operator
        self.moment = (
            moment
            if isinstance(moment, sa.ColumnElement)
            else sa.literal(moment, sa.DateTime(timezone=True))
        )


@compiles(_TimeComparison)
def _compare_times(element: _TimeComparison, compiler: SQLCompiler, **kw: Any) -> str:
    time, moment = element.time, element.moment
    compared = time > moment if element.operator == ">" else time <= moment
    return compiler.process(compared, **kw)


@compiles(_TimeComparison, "sqlite")
def _compare_times_on_sqlite(element: _TimeComparison, compiler: SQLCompiler, **kw: Any) -> str:
    """SQLite keeps a time as the text it was given and compares text: a time written by
    hand in another spelling ('2026-12-07T20:49:16Z', an offset) sorts after the hub's
    ('2026-12-07 20:49:16.123456') all that day. So both are read as times, to the
    millisecond (``julianday``: 'T', 'Z' and offsets understood), the text breaking a tie
    (the hub's own spelling, to the microsecond, compares exactly). A text that is no time
    compares as NULL: the grant is not active (docs/operations.md)."""
    time = compiler.process(element.time, **kw)
    moment = compiler.process(element.moment, **kw)
    return f"((julianday({time}), {time}) {element.operator} (julianday({moment}), {moment}))"


def after(time: Time, moment: Moment) -> sa.ColumnElement[bool]:
    """``time > moment`` for a grant's times, on SQLite whatever the spelling of a time
    written there by hand (``_compare_times_on_sqlite``). Every SQL that judges whether a
    grant has started or ended compares with this or :func:`at_or_before`."""
    return _TimeComparison(time, ">", moment)


def at_or_before(time: Time, moment: Moment) -> sa.ColumnElement[bool]:
    """``time <= moment``, as :func:`after` compares."""
    return _TimeComparison(time, "<=", moment)


def _active(now: datetime) -> list[sa.ColumnElement[bool]]:
    return [
        col(Grant.status) == "active",
        at_or_before(col(Grant.valid_from), now),
        sa.or_(col(Grant.valid_until).is_(None), after(col(Grant.valid_until), now)),
    ]


async def active_grant(
    session: AsyncSession, *, consumer: str, item: str, purpose: str, now: datetime
) -> Grant | None:
    query = (
        select(Grant)
        .where(
            col(Grant.consumer_id) == consumer,
            col(Grant.item_id) == item,
            col(Grant.purpose) == purpose,
            *_active(now),
        )
        .order_by(col(Grant.created_at))
        .limit(1)
    )
    return (await session.execute(query)).scalars().first()


async def granted_items(session: AsyncSession, *, consumer: str, now: datetime) -> set[str]:
    query = select(Grant.item_id).where(col(Grant.consumer_id) == consumer, *_active(now))
    return set((await session.execute(query)).scalars())


async def owned_items(session: AsyncSession, *, owner: str) -> list[str]:
    query = select(Item.id).where(col(Item.owner_id) == owner, col(Item.lifecycle) != "retired")
    return list((await session.execute(query)).scalars())


async def shared_item_ids(session: AsyncSession) -> list[str]:
    query = select(Item.id).where(col(Item.sharing_class) != "none").order_by(col(Item.id))
    return list((await session.execute(query)).scalars())


async def get_grant(session: AsyncSession, grant_id: str) -> tuple[Grant, str] | None:
    """The grant and its item's owner department."""
    query = (
        select(Grant, Item.owner_id)
        .join(Item, col(Item.id) == col(Grant.item_id))
        .where(col(Grant.id) == grant_id)
    )
    row = (await session.execute(query)).first()
    return (row[0], row[1]) if row is not None else None


@dataclass(frozen=True)
class GrantFilter:
    """``departments``: grants where one of them is consumer or owner (None: all)."""

    departments: frozenset[str] | None = None
    consumer: str | None = None
    item: str | None = None


async def list_grants(session: AsyncSession, where: GrantFilter) -> list[tuple[Grant, str]]:
    query = select(Grant, Item.owner_id).join(Item, col(Item.id) == col(Grant.item_id))
    if where.departments is not None:
        mine = list(where.departments)
        query = query.where(sa.or_(col(Grant.consumer_id).in_(mine), col(Item.owner_id).in_(mine)))
    if where.consumer is not None:
        query = query.where(col(Grant.consumer_id) == where.consumer)
    if where.item is not None:
        query = query.where(col(Grant.item_id) == where.item)
    query = query.order_by(col(Grant.created_at), col(Grant.id))
    return [(row[0], row[1]) for row in await session.execute(query)]


async def revoke_grant(
    session: AsyncSession, *, grant_id: str, at: datetime, by: str, reason: str | None
) -> bool:
    """Compare-and-set active → revoked; False if the grant was not active at ``at``
    (revoked, or its ``valid_until`` passed)."""
    statement = (
        sa.update(Grant)
        .where(
            col(Grant.id) == grant_id,
            col(Grant.status) == "active",
            sa.or_(col(Grant.valid_until).is_(None), after(col(Grant.valid_until), at)),
        )
        .values(status="revoked", revoked_at=at, revoked_by=by, revoke_reason=reason)
        .execution_options(synchronize_session=False)
    )
    result: Any = await session.execute(statement)
    return bool(result.rowcount == 1)


def add(session: AsyncSession, row: Grant | AccessRequest) -> None:
    session.add(row)


async def item_for_request(session: AsyncSession, item_id: str) -> Item | None:
    """The item, locked until the transaction ends (PostgreSQL), so that two requests
    for it are judged one after the other (SQLite's writers are serialized already)."""
    return await session.get(Item, item_id, with_for_update=True)


async def get_version(session: AsyncSession, item_id: str, version: int) -> ItemVersion | None:
    return await session.get(ItemVersion, (item_id, version))


async def versions(
    session: AsyncSession, keys: set[tuple[str, int]]
) -> dict[tuple[str, int], ItemVersion]:
    if not keys:
        return {}
    items = {item for item, _ in keys}
    query = select(ItemVersion).where(col(ItemVersion.item_id).in_(items))
    rows = (await session.execute(query)).scalars()
    return {(v.item_id, v.version): v for v in rows if (v.item_id, v.version) in keys}


async def get_request(session: AsyncSession, request_id: str) -> AccessRequest | None:
    return await session.get(AccessRequest, request_id, populate_existing=True)


async def pending_request(
    session: AsyncSession, *, consumer: str, item: str, purpose: str
) -> AccessRequest | None:
    query = select(AccessRequest).where(
        col(AccessRequest.consumer_id) == consumer,
        col(AccessRequest.item_id) == item,
        col(AccessRequest.purpose) == purpose,
        col(AccessRequest.status) == "pending",
    )
    return (await session.execute(query.limit(1))).scalars().first()


@dataclass(frozen=True)
class RequestFilter:
    """``visible_to``: requests where one of them is consumer or owner (None: all)."""

    visible_to: frozenset[str] | None = None
    owners: frozenset[str] | None = None
    consumers: frozenset[str] | None = None
    department: str | None = None
    item: str | None = None
    status: str | None = None
    overdue_at: datetime | None = None


def _request_conditions(where: RequestFilter) -> list[sa.ColumnElement[bool]]:
    consumer, owner = col(AccessRequest.consumer_id), col(AccessRequest.owner_id)
    conditions: list[sa.ColumnElement[bool]] = []
    if where.visible_to is not None:
        mine = list(where.visible_to)
        conditions.append(sa.or_(consumer.in_(mine), owner.in_(mine)))
    if where.owners is not None:
        conditions.append(owner.in_(list(where.owners)))
    if where.consumers is not None:
        conditions.append(consumer.in_(list(where.consumers)))
    if where.department is not None:
        conditions.append(sa.or_(consumer == where.department, owner == where.department))
    if where.item is not None:
        conditions.append(col(AccessRequest.item_id) == where.item)
    if where.status is not None:
        conditions.append(col(AccessRequest.status) == where.status)
    if where.overdue_at is not None:
        conditions.append(col(AccessRequest.status) == "pending")
        conditions.append(col(AccessRequest.answer_due) < where.overdue_at)
    return conditions


async def list_requests(
    session: AsyncSession, where: RequestFilter, *, limit: int
) -> list[AccessRequest]:
    query = (
        select(AccessRequest)
        .where(*_request_conditions(where))
        .order_by(col(AccessRequest.requested_at), col(AccessRequest.id))
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def pending_by_owner(session: AsyncSession, *, now: datetime) -> dict[str, tuple[int, int]]:
    """Per owner department: requests pending, and how many of them are overdue at
    ``now`` (their answer was due before it). One grouped read (ix_access_requests_owner_status)."""
    owner, due = col(AccessRequest.owner_id), col(AccessRequest.answer_due)
    overdue = sa.func.sum(sa.case((due < now, 1), else_=0))
    query = (
        sa.select(owner, sa.func.count(), overdue)
        .where(col(AccessRequest.status) == "pending")
        .group_by(owner)
    )
    rows = (await session.execute(query)).all()
    return {department: (int(pending), int(late or 0)) for department, pending, late in rows}


async def settle_request(
    session: AsyncSession, *, request_id: str, status: str, **values: Any
) -> bool:
    """Compare-and-set pending → ``status`` with ``values``; False if no longer pending."""
    statement = (
        sa.update(AccessRequest)
        .where(col(AccessRequest.id) == request_id, col(AccessRequest.status) == "pending")
        .values(status=status, **values)
        .execution_options(synchronize_session=False)
    )
    result: Any = await session.execute(statement)
    return bool(result.rowcount == 1)


async def request_status(session: AsyncSession, request_id: str) -> str | None:
    query = select(AccessRequest.status).where(col(AccessRequest.id) == request_id)
    return (await session.execute(query)).scalars().first()
