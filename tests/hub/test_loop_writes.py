"""Short SQLite writes on the event loop's thread (``onceonly.hub.loop_writes``): done
there only when SQLite's lock is free at that moment, never waited for, nothing left
half done; and the single-use register's unflushed spends that use it, with replays
still found whichever way a key was spent."""

import asyncio
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from onceonly.hub.auth.jti_register import JtiRegister
from onceonly.hub.db import make_engine, write_gate
from onceonly.hub.loop_writes import LoopWriter

from tests.hub.driver_trips import count_trips

LATER = datetime(2999, 1, 1, tzinfo=UTC)


@pytest.fixture
def wal_file(tmp_path: Path) -> Path:
    path = tmp_path / "loop.db"
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE t (x INTEGER UNIQUE)")
        setup.execute("CREATE TABLE other (x INTEGER)")
    return path


def _write_elsewhere(path: Path) -> None:
    """A commit of another connection: the WAL then holds frames not yet checkpointed."""
    other = sqlite3.connect(path)
    with other:
        other.execute("INSERT INTO other VALUES (1)")
    other.close()


def _writer(path: Path) -> LoopWriter:
    writer = LoopWriter(make_engine(f"sqlite:///{path}"))
    writer.open()
    _write_elsewhere(path)  # the loop's connection keeps the WAL from being removed
    return writer


def _rows(path: Path) -> list[int]:
    with sqlite3.connect(path) as reader:
        return [x for (x,) in reader.execute("SELECT x FROM t ORDER BY x")]


def test_a_write_commits_here_and_every_connection_sees_it(wal_file: Path) -> None:
    writer = _writer(wal_file)
    try:
        done = writer.try_write(lambda db: db.execute("INSERT INTO t VALUES (1)").rowcount)
        assert done == (True, 1)
        assert _rows(wal_file) == [1]
        assert (writer.done, writer.passed) == (1, 0)
    finally:
        writer.close()


def test_a_lock_held_by_another_connection_is_not_waited_for(wal_file: Path) -> None:
    writer = _writer(wal_file)
    holder = sqlite3.connect(wal_file, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # outside the gate: a session, another program
    ran: list[bool] = []
    try:
        started = time.monotonic()
        assert writer.try_write(lambda db: ran.append(True)) == (False, None)
        assert time.monotonic() - started < 0.5  # at once: busy_timeout is 0 (a wait: all of it)
        assert ran == []
        holder.execute("COMMIT")
        assert writer.try_write(lambda db: db.execute("INSERT INTO t VALUES (2)"))[0]
        assert _rows(wal_file) == [2]
    finally:
        writer.close()
        holder.close()


def test_a_gate_held_by_another_thread_is_not_waited_for(wal_file: Path) -> None:
    writer = _writer(wal_file)
    gate = write_gate(str(wal_file))
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        assert gate.enter(5)
        held.set()
        release.wait(5)
        gate.leave()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        started = time.monotonic()
        assert writer.try_write(lambda db: db.execute("INSERT INTO t VALUES (3)")) == (False, None)
        assert time.monotonic() - started < 0.5  # at once (waiting: until released, 5 s)
        release.set()
        holder.join(5)
        assert writer.try_write(lambda db: db.execute("INSERT INTO t VALUES (3)"))[0]
        assert _rows(wal_file) == [3]
    finally:
        release.set()
        writer.close()


def test_a_failed_write_leaves_nothing_and_is_handed_back(wal_file: Path) -> None:
    writer = _writer(wal_file)

    def twice(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO t VALUES (4)")
        db.execute("INSERT INTO t VALUES (4)")  # UNIQUE

    try:
        assert writer.try_write(twice) == (False, None)
        assert _rows(wal_file) == []
        assert writer.try_write(lambda db: db.execute("INSERT INTO t VALUES (5)"))[0]
        assert _rows(wal_file) == [5]
        assert (writer.done, writer.passed) == (1, 1)
    finally:
        writer.close()


def test_an_error_of_the_caller_rolls_back_and_is_raised(wal_file: Path) -> None:
    writer = _writer(wal_file)

    def broken(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO t VALUES (6)")
        raise KeyError("a bug")

    try:
        with pytest.raises(KeyError):
            writer.try_write(broken)
        assert _rows(wal_file) == []
        assert writer.try_write(lambda db: db.execute("INSERT INTO t VALUES (7)"))[0]
    finally:
        writer.close()


def test_a_write_that_would_start_the_wal_afresh_is_not_done_here(wal_file: Path) -> None:
    """After a checkpoint that copied every frame, the next writer writes and flushes a
    new WAL header: an fsync, not for the loop. Once another connection has done that,
    writes are done here again."""
    writer = _writer(wal_file)
    try:
        assert writer.try_write(lambda db: db.execute("INSERT INTO t VALUES (8)"))[0]
        checkpointer = sqlite3.connect(wal_file)
        (busy, frames, copied) = checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        checkpointer.close()
        assert (busy, frames) == (0, copied)
        assert writer.try_write(lambda db: db.execute("INSERT INTO t VALUES (9)")) == (False, None)
        _write_elsewhere(wal_file)
        assert writer.try_write(lambda db: db.execute("INSERT INTO t VALUES (9)"))[0]
        assert _rows(wal_file) == [8, 9]
        assert (writer.done, writer.passed) == (2, 1)
    finally:
        writer.close()


def test_it_stays_closed_in_memory_outside_wal_and_with_url_parameters(
    tmp_path: Path, wal_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    working = tmp_path / "cwd"
    working.mkdir()
    monkeypatch.chdir(working)
    rollback_journal = tmp_path / "journal.db"
    sqlite3.connect(rollback_journal).close()
    for url in (
        "sqlite://",
        f"sqlite:///{rollback_journal}",
        f"sqlite:///file:{wal_file}?mode=ro&uri=true",
    ):
        writer = LoopWriter(make_engine(url))
        writer.open()
        assert not writer.open_here
        assert writer.try_write(lambda db: 1) == (False, None)
    assert list(working.iterdir()) == []  # a file: URI is no path: no folder made for it


@pytest.mark.anyio
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_unflushed_spend_makes_no_trip_and_replays_are_found_either_way(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(database_url)
    register = JtiRegister(engine, batch_size=64)
    await register.start()
    try:
        assert await register.spend("warm", expires_at=LATER)  # flushed: the thread's way
        trips = count_trips(monkeypatch)
        for attempt in range(5):  # a spend that finds the log about to start afresh (a
            trips.clear()  # checkpoint of a closing connection), or the lock taken, goes
            jti = f"a{attempt}"  # the thread's way, as it should: CI's run met one
            spent = await register.spend_reading_generation(jti, expires_at=LATER, durable=False)
            assert spent.fresh
            if not trips:
                break
            await asyncio.sleep(0.05)
        assert spent.generation is not None
        assert trips == []  # before: one trip to the driver's thread per batch
        assert register.here.done == 1
        assert not await register.spend(jti, expires_at=LATER)  # the thread's way sees it
        assert await register.spend("b", expires_at=LATER)
        flushed = [trip for trip in trips if trip == "_in_sqlite_transaction"]
        assert flushed == ["_in_sqlite_transaction"] * 2  # the two flushed spends
        # and here (the loop's way, or the thread's when the log is about to start
        # afresh or the lock is taken: CI met that too; either way the replay is found)
        assert not await register.spend("b", expires_at=LATER, durable=False)
    finally:
        await register.stop()
        await engine.dispose()


@pytest.mark.anyio
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_spend_that_meets_the_lock_takes_the_threads_way_and_waits(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    register = JtiRegister(engine, batch_size=64)
    await register.start()
    path = sa.engine.make_url(database_url).database
    assert path is not None
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        spending = asyncio.ensure_future(register.spend("c", expires_at=LATER, durable=False))
        await asyncio.sleep(0.2)
        assert not spending.done()  # waiting on the thread, not refused, the loop free
        holder.execute("COMMIT")
        assert await asyncio.wait_for(spending, 10)
        assert (register.here.done, register.here.passed) == (0, 1)
    finally:
        holder.close()
        await register.stop()
        await engine.dispose()
