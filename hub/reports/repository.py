"""All SQL of the efficiency report: the roll-ups, and what the report reads beside them."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from onceonly.hub.access.models import AccessRequest
from onceonly.hub.audit import repository as audit
from onceonly.hub.audit.models import AuditEntry
from onceonly.hub.kit.clock import as_utc
from onceonly.hub.registry.models import Department, Item
from onceonly.hub.reports.models import (
    ReportCursor,
    ReportExchanges,
    ReportOwnerTimes,
    ReportRecords,
)
from onceonly.hub.reports.tally import Tally

CURSOR = "efficiency"
_cursor = ReportCursor.__table__  # type: ignore[attr-defined]
_exchanges = ReportExchanges.__table__  # type: ignore[attr-defined]
_owner_times = ReportOwnerTimes.__table__  # type: ignore[attr-defined]
_records = ReportRecords.__table__  # type: ignore[attr-defined]
_entries = AuditEntry.__table__  # type: ignore[attr-defined]
_items = Item.__table__  # type: ignore[attr-defined]
_departments = Department.__table__  # type: ignore[attr-defined]
_requests = AccessRequest.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Progress:
    """The roll-ups hold entries ``[0, through)`` of a log of ``log_size`` entries
    (``through`` is -1 when another replica moved the cursor first)."""

    through: int
    log_size: int

    @property
    def behind(self) -> int:
        return max(self.log_size - self.through, 0) if self.through >= 0 else 1


async def cursor(conn: AsyncConnection) -> int:
    row = await conn.execute(sa.select(_cursor.c.next_index).where(_cursor.c.name == CURSOR))
    value = row.scalar_one_or_none()
    return 0 if value is None else int(value)


async def log_size(conn: AsyncConnection) -> int:
    return await audit.next_index(conn)


async def move_cursor(conn: AsyncConnection, *, start: int, end: int) -> bool:
    """Compare-and-set ``start`` → ``end``; False if another writer moved it first."""
    if start == 0:
        exists = await conn.execute(sa.select(_cursor.c.name).where(_cursor.c.name == CURSOR))
        if exists.first() is None:
            inserted = await conn.execute(
                _insert(conn, _cursor)
                .values(name=CURSOR, next_index=end)
                .on_conflict_do_nothing(index_elements=["name"])
                .returning(_cursor.c.name)  # psycopg reports no rowcount for this insert
            )
            return inserted.first() is not None
    result = await conn.execute(
        sa.update(_cursor)
        .where(_cursor.c.name == CURSOR, _cursor.c.next_index == start)
        .values(next_index=end)
    )
    return result.rowcount == 1


async def leaves_between(
    conn: AsyncConnection, start: int, end: int, *, action: str
) -> list[bytes]:
    rows = await conn.execute(
        sa.select(_entries.c.leaf)
        .where(_entries.c.idx >= start, _entries.c.idx < end, _entries.c.action == action)
        .order_by(_entries.c.idx)
    )
    return [bytes(leaf) for (leaf,) in rows]


def _insert(conn: AsyncConnection, table: sa.Table) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


async def _upsert(
    conn: AsyncConnection,
    table: sa.Table,
    keys: Sequence[str],
    total: str,
    rows: list[dict[str, Any]],
) -> None:
    if not rows:
        return
    statement = _insert(conn, table)
    statement = statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={total: table.c[total] + statement.excluded[total]},
    )
    await conn.execute(statement, rows)


async def add(conn: AsyncConnection, sums: Tally) -> None:
    """Add ``sums`` to the roll-ups, in the caller's transaction."""
    exchange_keys = ("period", "item", "consumer", "purpose", "outcome", "reason", "reached")
    await _upsert(
        conn,
        _exchanges,
        exchange_keys,
        "queries",
        [
            dict(zip(exchange_keys, key, strict=True), queries=n)
            for key, n in sums.exchanges.items()
        ],
    )
    await _upsert(
        conn,
        _owner_times,
        ("period", "item", "ms"),
        "calls",
        [
            {"period": period, "item": item, "ms": ms, "calls": n}
            for (period, item, ms), n in sums.owner_times.items()
        ],
    )
    await _upsert(
        conn,
        _records,
        ("period", "item", "subject"),
        "uses",
        [
            {"period": period, "item": item, "subject": subject, "uses": n}
            for (period, item, subject), n in sums.records.items()
        ],
    )


# --- what a report reads ---------------------------------------------------------


@dataclass(frozen=True)
class ExchangeRow:
    item: str
    consumer: str
    purpose: str
    outcome: str
    reason: str
    reached: bool
    queries: int


async def exchanges(conn: AsyncConnection, period: str) -> list[ExchangeRow]:
    rows = await conn.execute(
        sa.select(
            _exchanges.c.item,
            _exchanges.c.consumer,
            _exchanges.c.purpose,
            _exchanges.c.outcome,
            _exchanges.c.reason,
            _exchanges.c.reached,
            _exchanges.c.queries,
        ).where(_exchanges.c.period == period)
    )
    return [ExchangeRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), int(r[6])) for r in rows]


async def owner_times(conn: AsyncConnection, period: str) -> dict[str, list[tuple[int, int]]]:
    """Per item: ``(ms, calls)`` in ascending ms."""
    rows = await conn.execute(
        sa.select(_owner_times.c.item, _owner_times.c.ms, _owner_times.c.calls)
        .where(_owner_times.c.period == period)
        .order_by(_owner_times.c.item, _owner_times.c.ms)
    )
    found: dict[str, list[tuple[int, int]]] = {}
    for item, ms, calls in rows:
        found.setdefault(item, []).append((int(ms), int(calls)))
    return found


async def distinct_records(conn: AsyncConnection, period: str) -> dict[str, int]:
    """Per item: how many distinct records (subjects) were served in the period."""
    rows = await conn.execute(
        sa.select(_records.c.item, sa.func.count())
        .where(_records.c.period == period)
        .group_by(_records.c.item)
    )
    return {item: int(n) for item, n in rows}


async def catalogue(conn: AsyncConnection) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """Items as ``{id: (title, owner)}`` and departments as ``{id: name}``."""
    items = await conn.execute(sa.select(_items.c.id, _items.c.title, _items.c.owner_id))
    departments = await conn.execute(sa.select(_departments.c.id, _departments.c.name))
    return (
        {row[0]: (row[1], row[2]) for row in items},
        {row[0]: row[1] for row in departments},
    )


@dataclass(frozen=True)
class RequestRow:
    owner: str
    item: str
    status: str
    requested_at: datetime
    answer_due: datetime
    decided_at: datetime | None


async def access_requests(
    conn: AsyncConnection, *, start: datetime, end: datetime
) -> list[RequestRow]:
    """The requests decided in ``[start, end)``, and every request still pending."""
    decided = sa.and_(
        _requests.c.decided_at.is_not(None),
        _requests.c.decided_at >= as_utc(start),
        _requests.c.decided_at < as_utc(end),
        _requests.c.status.in_(("approved", "refused")),
    )
    rows = await conn.execute(
        sa.select(
            _requests.c.owner_id,
            _requests.c.item_id,
            _requests.c.status,
            _requests.c.requested_at,
            _requests.c.answer_due,
            _requests.c.decided_at,
        ).where(sa.or_(decided, _requests.c.status == "pending"))
    )
    return [RequestRow(*row) for row in rows]
