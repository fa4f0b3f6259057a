"""An idle delivery round looks before it claims: it takes no write lock.

The deliverer runs a round every ``event_poll_interval`` (0.5 s). A round used to claim
in a write transaction whether or not anything was due, so on SQLite it took the
database's write lock twice a second, and the exchange's group commits, meeting it,
slept in SQLite's busy handler. Now a round with nothing due only reads.
"""

import asyncio
import sqlite3
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
