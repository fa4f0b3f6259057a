"""The audit writer's batch as one call to the driver (onceonly.hub.db.write_in_one_call):
the same rows, bytes and tree nodes as the SQLAlchemy path (``append_rows``), and a
batch that fails half-way fails every waiter and leaves nothing; on SQLite and
PostgreSQL."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from onceonly.hub.audit import leaves
from onceonly.hub.audit.exceptions import AuditUnavailable
from onceonly.hub.audit.service import AuditLog, append_rows
from onceonly.hub.db import make_engine, write_connection

pytestmark = pytest.mark.anyio

START = datetime(2026, 12, 6, 10, 0, 0, 123000, tzinfo=UTC)


def _entry(n: int) -> dict[str, Any]:
    """Entries with every indexed column, some without (None), at distinct times."""
    fields: dict[str, Any] = {"request_id": f"r{n}", "purpose": "benefit-eligibility"}
    if n % 3:
        fields |= {"client": f"client-{n % 4}", "department": "social-welfare"}
        fields |= {"item": "civil-registry.address", "subject": f"{n:064x}"}
    return leaves.build_entry(
        time=START + timedelta(milliseconds=n), action="record.query", outcome="ok", **fields
    )


async def _table(engine: AsyncEngine, query: str) -> list[tuple[Any, ...]]:
    """Every row as the database holds it (no SQLAlchemy type on the way back)."""
    async with engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(sa.text(query))]


async def _stored(engine: AsyncEngine) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    entries = await _table(engine, "SELECT * FROM audit_entries ORDER BY idx")
    nodes = await _table(engine, "SELECT * FROM audit_nodes ORDER BY level, idx")
    return entries, nodes


async def _empty(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text("DELETE FROM audit_nodes"))
        await conn.execute(sa.text("DELETE FROM audit_entries"))


async def test_one_call_batches_write_what_append_rows_writes(database_url: str) -> None:
    engine = make_engine(database_url)
    entries = [_entry(n) for n in range(75)]
    log = AuditLog(engine, batch_size=7)  # uneven batches: frontiers of every shape
    await log.start()
    try:
        receipts = await asyncio.gather(*(log.append(entry) for entry in entries))
    finally:
        await log.stop()
    one_call = await _stored(engine)
    await _empty(engine)
    leaf_list = [(entry, leaves.leaf_bytes(entry)) for entry in entries]
    for start in range(0, len(leaf_list), 11):  # other batch boundaries, same tree
        async with write_connection(engine) as conn:
            await append_rows(conn, leaf_list[start : start + 11])
    through_sqlalchemy = await _stored(engine)
    await engine.dispose()
    assert one_call == through_sqlalchemy
    assert len(one_call[0]) == 75
    assert len(one_call[1]) == 75 - bin(75).count("1")  # one node per merge
    assert [(r.index, r.leaf_hash) for r in receipts] == [
        (n, leaves.leaf_hash(leaf)) for n, (_, leaf) in enumerate(leaf_list)
    ]


_FAIL_AT_3 = {
    "sqlite": [
        "CREATE TRIGGER fail_at_3 BEFORE INSERT ON audit_entries WHEN NEW.idx = 3"
        " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION fail_at_3() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.idx = 3 THEN RAISE EXCEPTION 'refused by the test'; END IF;"
        " RETURN NEW; END $$",
        "CREATE TRIGGER fail_at_3 BEFORE INSERT ON audit_entries"
        " FOR EACH ROW EXECUTE FUNCTION fail_at_3()",
    ],
}
_NO_FAIL = {
    "sqlite": ["DROP TRIGGER fail_at_3"],
    "postgresql": ["DROP TRIGGER fail_at_3 ON audit_entries", "DROP FUNCTION fail_at_3()"],
}


async def _run(engine: AsyncEngine, statements: dict[str, list[str]]) -> None:
    async with engine.begin() as conn:
        for statement in statements[engine.dialect.name]:
            await conn.execute(sa.text(statement))


async def test_a_batch_failing_half_way_fails_every_waiter_and_leaves_nothing(
    database_url: str,
) -> None:
    """The fourth row of the batch is refused after three went in: the whole batch is
    rolled back, every waiter hears AuditUnavailable, and the log goes on from 0."""
    engine = make_engine(database_url)
    await _run(engine, _FAIL_AT_3)
    log = AuditLog(engine, batch_size=64)
    await log.start()
    try:
        outcomes = await asyncio.gather(
            *(log.append(_entry(n)) for n in range(10)), return_exceptions=True
        )
        assert all(isinstance(outcome, AuditUnavailable) for outcome in outcomes), outcomes
        assert await _stored(engine) == ([], [])
        await _run(engine, _NO_FAIL)
        receipt = await log.append(_entry(99))
    finally:
        await log.stop()
    entries, _ = await _stored(engine)
    await engine.dispose()
    assert receipt.index == 0
    assert [row[0] for row in entries] == [0]


async def test_an_overlong_column_value_is_refused_as_through_sqlalchemy(
    database_url: str,
) -> None:
    """PostgreSQL refuses an action longer than its column (SQLite keeps it): the one
    call refuses or keeps it as the SQLAlchemy path does, never cut short."""
    engine = make_engine(database_url)
    entry = leaves.build_entry(time=START, action="a" * 65, outcome="ok", request_id="long")
    log = AuditLog(engine, batch_size=1)
    await log.start()
    try:
        one_call = await asyncio.gather(log.append(entry), return_exceptions=True)
    finally:
        await log.stop()
    stored_by_one_call = await _stored(engine)
    await _empty(engine)
    try:
        async with write_connection(engine) as conn:
            await append_rows(conn, [(entry, leaves.leaf_bytes(entry))])
        refused_by_sqlalchemy = False
    except sa.exc.DBAPIError:
        refused_by_sqlalchemy = True
    stored_by_sqlalchemy = await _stored(engine)
    await engine.dispose()
    assert isinstance(one_call[0], AuditUnavailable) == refused_by_sqlalchemy
    assert refused_by_sqlalchemy == (engine.dialect.name == "postgresql")
    assert stored_by_one_call == stored_by_sqlalchemy
