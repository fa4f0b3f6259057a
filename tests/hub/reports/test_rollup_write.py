"""The roll-up's write: the cursor moved and the sums added in one transaction, the sums
those of the log's record queries, each batch added once however many catch-ups run
side by side; on SQLite as one trip to the driver's thread, behind the write gate, so
that it holds SQLite's write lock, which every exchange's audit entry waits for, for
about a millisecond instead of a dozen trips (35-110 ms measured)."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from onceonly.hub.audit import leaves
from onceonly.hub.audit.service import AuditLog
from onceonly.hub.db import make_engine
from onceonly.hub.kit.clock import SYSTEM_CLOCK
from onceonly.hub.reports import repository
from onceonly.hub.reports.rollup import Rollup
from onceonly.hub.reports.tally import Tally, tally

from tests.hub.driver_trips import count_trips

pytestmark = pytest.mark.anyio

START = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)  # two months, two quarters


def _entry(n: int) -> dict[str, Any]:
    return leaves.build_entry(
        time=START + timedelta(milliseconds=400 * n),
        action="record.query" if n % 5 else "record.publish",
        outcome="ok" if n % 3 else "refused",
        reason=None if n % 3 else "no-grant",
        client="tax-adapter",
        department="tax",
        owner="civil-registry" if n % 3 else None,
        item="person.residential-address" if n % 2 else "person.death",
        subject=f"{n % 4:064x}",
        purpose="tax-assessment",
    )


async def _log_of(engine: AsyncEngine, count: int) -> list[bytes]:
    log = AuditLog(engine, batch_size=64)
    await log.start()
    try:
        entries = [_entry(n) for n in range(count)]
        await asyncio.gather(*(log.append(entry) for entry in entries))
    finally:
        await log.stop()
    async with engine.connect() as conn:
        query = sa.text("SELECT leaf FROM audit_entries ORDER BY idx")
        return [bytes(leaf) for (leaf,) in await conn.execute(query)]


async def _stored(engine: AsyncEngine) -> Tally:
    stored = Tally()
    async with engine.connect() as conn:
        for row in await conn.execute(sa.text("SELECT * FROM report_exchanges")):
            key = (row.period, row.item, row.consumer, row.purpose, row.outcome, row.reason)
            stored.exchanges[(*key, bool(row.reached))] = row.queries
        for row in await conn.execute(sa.text("SELECT * FROM report_owner_times")):
            stored.owner_times[(row.period, row.item, row.ms)] = row.calls
        for row in await conn.execute(sa.text("SELECT * FROM report_records")):
            stored.records[(row.period, row.item, row.subject)] = row.uses
    return stored


async def test_batches_add_the_logs_sums_once_with_catch_ups_side_by_side(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    try:
        logged = await _log_of(engine, 40)
        first, second = (
            Rollup(engine, interval=3600, clock=SYSTEM_CLOCK, batch_size=7) for _ in range(2)
        )
        done = await asyncio.gather(first.catch_up(), second.catch_up(), first.catch_up())
        assert all(progress.behind == 0 for progress in done)
        async with engine.connect() as conn:
            assert await repository.cursor(conn) == len(logged)
        expected = tally(logged)
        assert expected.exchanges  # the test has something to add
        assert await _stored(engine) == expected
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_on_sqlite_a_batch_is_written_in_one_trip(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(database_url)
    try:
        logged = await _log_of(engine, 12)
        trips = count_trips(monkeypatch)
        rollup = Rollup(engine, interval=3600, clock=SYSTEM_CLOCK, batch_size=100)
        assert (await rollup.catch_up()).behind == 0
        # the reads before it, then the write: one function on the thread
        assert trips.count("_in_sqlite_transaction") == 1
        assert not {"executemany", "commit"} & set(trips)
        assert await _stored(engine) == tally(logged)
    finally:
        await engine.dispose()


async def test_the_workers_batches_are_small_and_a_catch_up_adds_them_all(
    database_url: str,
) -> None:
    """A batch adds at most 200 entries (``rollup.BATCH_SIZE``): on SQLite its write holds the
    lock every exchange's audit entry waits for, and a batch of 1,000 held it 15-36 ms
    on a busy hub (the added p99 at 300 exchanges/s, the hub on a core of its own:
    35-48 ms, 15-19 ms with 200)."""
    engine = make_engine(database_url)
    try:
        logged = await _log_of(engine, 450)
        rollup = Rollup(engine, interval=3600, clock=SYSTEM_CLOCK)
        first = await rollup.catch_up(budget=0)  # one batch, then the budget is spent
        assert first.through == 200  # before: all 450 at once (batches of 1,000)
        assert first.behind == 250
        assert (await rollup.catch_up()).behind == 0
        assert await _stored(engine) == tally(logged)
    finally:
        await engine.dispose()
