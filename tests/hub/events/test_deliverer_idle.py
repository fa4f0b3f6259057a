"""An idle delivery round looks before it claims: it takes no write lock.

The deliverer runs a round every ``event_poll_interval`` (0.5 s). A round used to claim
in a write transaction whether or not anything was due, so on SQLite it took the
database's write lock twice a second, and the exchange's group commits, meeting it,
slept in SQLite's busy handler. Now a round with nothing due only reads.
"""

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from onceonly.hub.config import Settings
from onceonly.hub.db import make_engine
from onceonly.hub.events.delivery import Deliverer

from tests.hub_testing import migrated_sqlite

pytestmark = pytest.mark.anyio


def _deliverer(url: str) -> Deliverer:
    # Nothing is due, so the round never reaches the HTTP client, keys or audit log.
    nothing = cast(Any, None)
    return Deliverer(
        engine=make_engine(url),
        http=nothing,
        keys=nothing,
        settings=Settings(),
        audit_log=nothing,
    )


async def test_a_round_with_nothing_due_does_not_wait_for_the_write_lock(
    sqlite_template: Path, tmp_path: Path
) -> None:
    url = migrated_sqlite(sqlite_template, tmp_path)
    deliverer = _deliverer(url)
    other = sqlite3.connect(tmp_path / "hub.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock (busy_timeout: 10 s)
        assert await asyncio.wait_for(deliverer.deliver_due(), 3) == 0
    finally:
        other.execute("ROLLBACK")
        other.close()
        await deliverer._engine.dispose()


async def test_rounds_that_keep_failing_log_one_traceback_then_a_count(
    sqlite_template: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator's review: with the database away, every round (two a second) logged
    an ERROR with its whole traceback, about 100 MB an hour. Now the first failure has
    its traceback, the later ones a line with the count, and the first round that
    works again says so. The outage here: the deliveries' table is renamed away."""
    url = migrated_sqlite(sqlite_template, tmp_path)
    deliverer = Deliverer(
        engine=make_engine(url),
        http=cast(Any, None),
        keys=cast(Any, None),
        settings=Settings(event_poll_interval=0.05),
        audit_log=cast(Any, None),
    )
    db = sqlite3.connect(tmp_path / "hub.db", isolation_level=None)

    def lines(start: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().startswith(start)]

    async def until(done: Callable[[], bool]) -> None:
        while not done():
            await asyncio.sleep(0.02)

    try:
        with caplog.at_level(logging.WARNING, logger="onceonly.events"):
            db.execute("ALTER TABLE event_deliveries RENAME TO away")
            await deliverer.start()
            await asyncio.wait_for(
                until(lambda: len(lines("event delivery round failed")) >= 4), 10
            )
            db.execute("ALTER TABLE away RENAME TO event_deliveries")
            await asyncio.wait_for(until(lambda: bool(lines("event delivery rounds"))), 10)
            await deliverer.stop()
    finally:
        db.close()
        await deliverer._engine.dispose()
    first, *later = lines("event delivery round failed")
    assert (first.levelno, first.exc_info is not None) == (logging.ERROR, True)
    assert {(r.levelno, r.exc_info) for r in later} == {(logging.WARNING, None)}
    assert ", 2 rounds in a row;" in later[0].getMessage()
    (back,) = lines("event delivery rounds")
    assert back.getMessage().endswith(f"after {len(later) + 1} failed")
