"""All SQL of the efficiency report: the roll-ups, and what the report reads beside them."""

import sqlite3
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from onceonly.hub.access.models import AccessRequest
from onceonly.hub.audit import repository as audit
from onceonly.hub.audit.models import AuditEntry
from onceonly.hub.db import insert_rows_now
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
    conn: AsyncConnection, start: int, end: int, *, action: str | None
) -> list[bytes]:
    """The leaves of entries ``[start, end)`` in log order: those whose ``action``
    column is ``action``, or every one (None)."""
    where = [_entries.c.idx >= start, _entries.c.idx < end]
    if action is not None:
        where.append(_entries.c.action == action)
    rows = await conn.execute(sa.select(_entries.c.leaf).where(*where).order_by(_entries.c.idx))
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


EXCHANGE_KEYS = ("period", "item", "consumer", "purpose", "outcome", "reason", "reached")
OWNER_TIME_KEYS = ("period", "item", "ms")
RECORD_KEYS = ("period", "item", "subject")


@dataclass(frozen=True)
class _Sums:
    """One roll-up table's part of a tally: its key columns, its total, its rows."""

    table: sa.Table
    keys: tuple[str, ...]
    total: str
    rows: list[dict[str, Any]]


def _sums(sums: Tally) -> list[_Sums]:
    return [
        _Sums(
            _exchanges,
            EXCHANGE_KEYS,
            "queries",
            [
                dict(zip(EXCHANGE_KEYS, key, strict=True), queries=n)
                for key, n in sums.exchanges.items()
            ],
        ),
        _Sums(
            _owner_times,
            OWNER_TIME_KEYS,
            "calls",
            [
                {"period": period, "item": item, "ms": ms, "calls": n}
                for (period, item, ms), n in sums.owner_times.items()
            ],
        ),
        _Sums(
            _records,
            RECORD_KEYS,
            "uses",
            [
                {"period": period, "item": item, "subject": subject, "uses": n}
                for (period, item, subject), n in sums.records.items()
            ],
        ),
    ]


StoredSums = dict[str, dict[tuple[Any, ...], Any]]
"""Each roll-up table's rows by name: key columns → total, as stored."""


async def stored_sums(
    conn: AsyncConnection,
    *,
    tables: Collection[str] | None = None,
    keep: Callable[[tuple[Any, ...]], bool] | None = None,
) -> StoredSums:
    """The roll-up rows as stored (of ``tables``, by name; every table by default), those
    whose key ``keep`` takes (all by default): its key, and its total whatever it holds
    (on SQLite a column may hold another type than declared). ``reached`` is read as
    stored, False and True for 0 and 1 only: SQLite's own reading makes any other value
    True, which would hide a second row of the same key. Two rows that still read as one
    key are both kept, as a total no tally gives (``("two rows", a, b)``). Rows are
    streamed: only those kept are held."""
    stored: StoredSums = {}
    for part in _sums(Tally()):
        if tables is not None and part.table.name not in tables:
            continue
        columns = [
            sa.type_coerce(part.table.c[k], sa.Integer) if k == "reached" else part.table.c[k]
            for k in part.keys
        ]
        rows = await conn.stream(sa.select(*columns, part.table.c[part.total]))
        table: dict[tuple[Any, ...], Any] = {}
        async for *values, total in rows:
            named = zip(part.keys, values, strict=True)
            key = tuple(_reached(v) if k == "reached" else v for k, v in named)
            if keep is not None and not keep(key):
                continue
            table[key] = ("two rows", table[key], total) if key in table else total
        stored[part.table.name] = table
    return stored


async def record_rows(conn: AsyncConnection) -> int:
    """How many rows ``report_records`` holds."""
    found = await conn.execute(sa.select(sa.func.count()).select_from(_records))
    return int(found.scalar_one())


def _reached(value: Any) -> Any:
    return bool(value) if isinstance(value, int) and value in (0, 1) else value


def tallied(sums: Tally) -> StoredSums:
    """``sums`` by table name, as :func:`stored_sums` reads them: a tally's keys are
    its tables' key columns in order."""
    return {
        _exchanges.name: dict(sums.exchanges),
        _owner_times.name: dict(sums.owner_times),
        _records.name: dict(sums.records),
    }


TABLE_KEYS = {
    _exchanges.name: EXCHANGE_KEYS,
    _owner_times.name: OWNER_TIME_KEYS,
    _records.name: RECORD_KEYS,
}


async def empty(conn: AsyncConnection) -> None:
    """No roll-up and no cursor: as a new database's (in the caller's transaction)."""
    for table in (_cursor, _exchanges, _owner_times, _records):
        await conn.execute(sa.delete(table))


async def add(conn: AsyncConnection, sums: Tally) -> None:
    """Add ``sums`` to the roll-ups, in the caller's transaction."""
    for part in _sums(sums):
        await _upsert(conn, part.table, part.keys, part.total, part.rows)


# --- the same on SQLite, as one call on the driver's thread (db.write_in_one_call) -----
#
# Statement by statement through SQLAlchemy, a batch's write was a dozen trips to
# aiosqlite's thread, each waiting for the GIL while the event loop ran, and it held
# SQLite's write lock, which every exchange's audit entry waits for, 35-110 ms. As one
# function on the thread, under the write gate, it holds it about a millisecond.

_QMARK = sqlite.dialect(paramstyle="qmark")


def _sqlite_text(statement: Any) -> tuple[str, tuple[str, ...]]:
    """``statement`` as sqlite3 text, and the names of its parameters in order."""
    compiled = statement.compile(dialect=_QMARK)
    return compiled.string, tuple(compiled.positiontup or ())


def _sqlite_upsert(
    table: sa.Table, keys: tuple[str, ...], total: str
) -> tuple[str, tuple[str, ...]]:
    columns = (*keys, total)
    statement = sqlite.insert(table).values({name: sa.bindparam(name) for name in columns})
    statement = statement.on_conflict_do_update(
        index_elements=list(keys), set_={total: table.c[total] + statement.excluded[total]}
    )
    return _sqlite_text(statement)


_SQLITE_UPSERTS = {
    part.table.name: _sqlite_upsert(part.table, part.keys, part.total) for part in _sums(Tally())
}
_CURSOR_EXISTS = _sqlite_text(
    sa.select(_cursor.c.name).where(_cursor.c.name == sa.bindparam("name"))
)
_CURSOR_FIRST = _sqlite_text(
    sqlite.insert(_cursor)
    .values(name=sa.bindparam("name"), next_index=sa.bindparam("end"))
    .on_conflict_do_nothing(index_elements=["name"])
    .returning(_cursor.c.name)
)
_CURSOR_MOVE = _sqlite_text(
    sa.update(_cursor)
    .where(_cursor.c.name == sa.bindparam("name"), _cursor.c.next_index == sa.bindparam("start"))
    .values(next_index=sa.bindparam("end"))
)


def _run(db: sqlite3.Connection, text: tuple[str, tuple[str, ...]], values: dict[str, Any]) -> Any:
    sql, names = text
    return db.execute(sql, tuple(values[name] for name in names))


def sqlite_upserts(sums: Tally) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The upserts of ``sums`` for :func:`add_now`, as (statement, rows): built before
    the write transaction, so that none of it runs while the write lock is held."""
    upserts = []
    for part in _sums(sums):
        if part.rows:
            sql, names = _SQLITE_UPSERTS[part.table.name]
            upserts.append((sql, [tuple(row[name] for name in names) for row in part.rows]))
    return upserts


def add_now(
    db: sqlite3.Connection,
    *,
    start: int,
    end: int,
    upserts: list[tuple[str, list[tuple[Any, ...]]]],
) -> bool:
    """:func:`move_cursor` and :func:`add` on a sqlite3 connection, in its transaction,
    with :func:`sqlite_upserts`' statements: False, with nothing written, if another
    writer moved the cursor first."""
    values = {"name": CURSOR, "start": start, "end": end}
    if start == 0 and not _run(db, _CURSOR_EXISTS, values).fetchall():
        moved = bool(_run(db, _CURSOR_FIRST, values).fetchall())
    else:
        moved = _run(db, _CURSOR_MOVE, values).rowcount == 1
    if not moved:
        return False
    for sql, rows in upserts:
        insert_rows_now(db, sql, rows)
    return True


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
