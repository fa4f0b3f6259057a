"""A hub that stops closes every database connection it opened: none is left for the
garbage collector to close (on SQLite, an open connection keeps the database's files
open, its WAL among them, after the hub has stopped).

A background read cancelled in the middle (the metric labels' refresh, a checkpoint
round) was such a connection: SQLAlchemy invalidates a connection whose statement is
cancelled, and with aiosqlite the invalidated connection's sqlite3 connection could be
left unclosed. The workers now let a read under way finish before they stop."""

import asyncio
import gc
import os
from functools import partial
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from onceonly.hub.app import create_app
from onceonly.hub.config import Settings
from onceonly.hub.db import make_engine
from onceonly.hub.kit.clock import SYSTEM_CLOCK
from onceonly.hub.metrics import LabelGuard, Vocabulary
from onceonly.hub.reports import repository as reports_repository
from onceonly.hub.reports.rollup import Rollup
from onceonly.hub.runtime import hub_of

from tests.hub_testing import migrated_sqlite

SLOW_READ = (  # a read of about a second on SQLite: under way when the worker stops
    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 3000000)"
    " SELECT count(*) FROM n"
)


def _open_files(database: Path) -> list[str]:
    """What this process holds open of the SQLite database (its file, WAL, shared memory)."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target in {str(database), f"{database}-wal", f"{database}-shm"}:
            held.append(target)
    return held


@pytest.fixture
def sqlite_database(sqlite_template: Path, tmp_path: Path) -> Path:
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("reads this process's open files from /proc (Linux)")
    url = migrated_sqlite(sqlite_template, tmp_path)
    return Path(url.removeprefix("sqlite:///"))


async def _slow_vocabulary(engine: AsyncEngine, started: asyncio.Event) -> Vocabulary:
    async with engine.connect() as conn:
        started.set()
        await conn.execute(sa.text(SLOW_READ))
    return Vocabulary()


@pytest.mark.anyio
async def test_the_metric_labels_stop_without_leaving_their_read_open(
    sqlite_database: Path,
) -> None:
    engine = make_engine(f"sqlite:///{sqlite_database}")
    started = asyncio.Event()
    guard = LabelGuard(partial(_slow_vocabulary, engine, started))
    guard.registry_changed()  # a refresh, as after a registry change
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.sleep(0.05)  # its read under way
    await guard.stop()
    await engine.dispose()
    assert _open_files(sqlite_database) == []


@pytest.mark.anyio
async def test_starting_and_stopping_the_hub_leaves_no_database_file_open(
    sqlite_database: Path, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "hub",
        database_url=f"sqlite:///{sqlite_database}",
        checkpoint_interval=0.01,
        report_rollup_interval=0.01,
        log_json=False,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        hub_of(app).metrics.guard.registry_changed()  # a refresh under way at the stop
    assert _open_files(sqlite_database) == []
    gc.collect()  # and nothing unclosed for it to find (a ResourceWarning fails the test)


@pytest.mark.anyio
async def test_the_report_rollup_finishes_its_batch_before_it_stops(
    sqlite_database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch under way at the stop is added (the cursor moves past it) and its
    connections are closed; cancelled in its read, it was neither."""
    started = asyncio.Event()

    async def one_entry(conn: AsyncConnection) -> int:
        return 1  # the log holds one entry the roll-ups have not added

    async def slow_leaves(
        conn: AsyncConnection, start: int, end: int, *, action: str
    ) -> list[bytes]:
        started.set()
        await conn.execute(sa.text(SLOW_READ))
        return []

    monkeypatch.setattr(reports_repository, "log_size", one_entry)
    monkeypatch.setattr(reports_repository, "leaves_between", slow_leaves)
    engine = make_engine(f"sqlite:///{sqlite_database}")
    rollup = Rollup(engine, interval=3600, clock=SYSTEM_CLOCK)
    await rollup.start()
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.sleep(0.05)  # its read under way
    await rollup.stop()
    async with engine.connect() as conn:
        assert await reports_repository.cursor(conn) == 1
    await engine.dispose()
    assert _open_files(sqlite_database) == []
