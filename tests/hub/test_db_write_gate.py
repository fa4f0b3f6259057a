"""SQLite's write lock, queued for instead of slept for (``onceonly.hub.db``'s write gate).

Without the gate, a writer that finds SQLite's lock taken sleeps in SQLite's busy
handler (1, 2, 5, ... then 100 ms at a time) and wakes up to 100 ms after the lock is
free; with it, the next writer of this process (a thread lock) or of another process on
the same file (flock on ``<database>-writers``) starts the moment the holder commits.
"""

import asyncio
import fcntl
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from onceonly.hub import db as hub_db
from onceonly.hub.db import WRITERS_SUFFIX, make_engine, write_in_one_call

pytestmark = pytest.mark.anyio

HOLD = 0.5  # seconds: past SQLite's early sleeps, into its 100 ms ones
# The holder's and the waiter's commits are not flushed (durable=False): the lateness
# measured is the hand-over, not the disk's fsync, which a slow disk would add to it.
ROUNDS = 5


async def _unused(driver: object) -> None:
    raise AssertionError("PostgreSQL's work on a SQLite engine")


def _create(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS t (who TEXT, at REAL)")


def _insert(who: str) -> "object":
    def work(db: sqlite3.Connection) -> float:
        db.execute("INSERT INTO t VALUES (?, ?)", (who, time.time()))
        return time.time()

    return work


async def _lateness_behind_a_thread(path: Path) -> float:
    """One round: another connection of this process holds the lock for HOLD seconds;
    how long after its COMMIT did the waiting writer's transaction run?"""
    engine = make_engine(f"sqlite:///{path}")
    holding, released = threading.Event(), [0.0]

    def hold(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO t VALUES ('holder', 0)")
        holding.set()
        time.sleep(HOLD)
        released[0] = time.time()  # the COMMIT follows at once

    try:
        holder = asyncio.create_task(
            write_in_one_call(engine, sqlite_work=hold, postgres_work=_unused, durable=False)
        )
        await asyncio.to_thread(holding.wait, 5)
        ran = await write_in_one_call(
            engine, sqlite_work=_insert("waiter"), postgres_work=_unused, durable=False
        )
        await holder
        return ran - released[0]  # type: ignore[operator]
    finally:
        await engine.dispose()


_HOLDER = textwrap.dedent(
    """
    import asyncio, sys, time
    from onceonly.hub.db import make_engine, write_in_one_call

    async def unused(driver):
        raise AssertionError

    def hold(db):
        db.execute("INSERT INTO t VALUES ('holder', 0)")
        print("holding", flush=True)
        time.sleep(float(sys.argv[2]))
        print(time.time(), flush=True)  # the COMMIT follows at once

    async def main():
        engine = make_engine("sqlite:///" + sys.argv[1])
        await write_in_one_call(engine, sqlite_work=hold, postgres_work=unused, durable=False)
        await engine.dispose()

    asyncio.run(main())
    """
)


async def _lateness_behind_a_process(path: Path) -> float:
    """As above, the holder being another process on the same file (``--workers N``)."""
    engine = make_engine(f"sqlite:///{path}")
    command = [sys.executable, "-c", _HOLDER, str(path), str(HOLD)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None
            line = await asyncio.to_thread(holder.stdout.readline)
            assert line.strip() == "holding", line
            ran = await write_in_one_call(
                engine, sqlite_work=_insert("waiter"), postgres_work=_unused, durable=False
            )
            released = float(await asyncio.to_thread(holder.stdout.readline))
            assert await asyncio.to_thread(holder.wait, 10) == 0
            return ran - released  # type: ignore[operator]
        finally:
            if holder.poll() is None:
                holder.kill()
            await engine.dispose()


@pytest.mark.parametrize("holder", ["thread", "process"])
async def test_a_waiting_writer_starts_as_soon_as_the_lock_is_let_go(
    tmp_path: Path, holder: str
) -> None:
    """Five rounds of a writer waiting behind a 0.5 s transaction. SQLite's busy handler
    alone wakes it 0-100 ms late (35-45 ms a round here, 180-200 ms over five);
    through the gate it runs within a few ms of the holder's commit."""
    path = tmp_path / "gate.db"
    engine = make_engine(f"sqlite:///{path}")
    await write_in_one_call(engine, sqlite_work=_create, postgres_work=_unused)
    await engine.dispose()
    lateness = _lateness_behind_a_thread if holder == "thread" else _lateness_behind_a_process
    late = [await lateness(path) for _ in range(ROUNDS)]
    assert all(value > -0.05 for value in late), late  # it did wait for the holder
    assert sum(late) < 0.1, late
    assert (tmp_path / f"gate.db{WRITERS_SUFFIX}").exists()
    rows = sqlite3.connect(path).execute("SELECT who, count(*) FROM t GROUP BY who").fetchall()
    assert sorted(rows) == [("holder", ROUNDS), ("waiter", ROUNDS)]


async def test_a_database_in_memory_has_no_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a path-less gate would be made from the working directory
    gates = dict(hub_db._GATES)
    engine = make_engine("sqlite:///:memory:")
    try:
        await write_in_one_call(engine, sqlite_work=_create, postgres_work=_unused)
        assert await write_in_one_call(engine, sqlite_work=lambda db: 1, postgres_work=_unused) == 1
    finally:
        await engine.dispose()
    assert hub_db._GATES == gates
    assert not list(tmp_path.iterdir())
    assert not list(tmp_path.parent.glob(f"{tmp_path.name}*{WRITERS_SUFFIX}"))


async def test_a_gate_held_too_long_is_passed_by_after_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A holder stopped between the gate and SQLite's lock (a frozen process) does not
    stop the others for ever: after the busy timeout they try SQLite's lock without it."""
    monkeypatch.setattr(hub_db, "BUSY_TIMEOUT_MS", 500)
    path = tmp_path / "held.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        await write_in_one_call(engine, sqlite_work=_create, postgres_work=_unused)
        stopped = os.open(f"{path}{WRITERS_SUFFIX}", os.O_RDONLY)  # another description
        try:
            fcntl.flock(stopped, fcntl.LOCK_EX)
            started = time.monotonic()
            await asyncio.wait_for(
                write_in_one_call(engine, sqlite_work=_insert("past"), postgres_work=_unused),
                5,
            )
            assert 0.4 < time.monotonic() - started < 3
        finally:
            os.close(stopped)
        rows = sqlite3.connect(path).execute("SELECT who FROM t").fetchall()
        assert rows == [("past",)]
    finally:
        await engine.dispose()


async def test_without_a_gate_file_the_writes_still_go_through(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A gate file that cannot be made (here a link to nowhere; a read-only directory)
    costs only the order among processes: said once, and every write commits."""
    path = tmp_path / "nofile.db"
    Path(f"{path}{WRITERS_SUFFIX}").symlink_to(tmp_path / "missing" / "writers")
    engine = make_engine(f"sqlite:///{path}")
    try:
        await write_in_one_call(engine, sqlite_work=_create, postgres_work=_unused)
        for n in range(3):
            await write_in_one_call(engine, sqlite_work=_insert(f"w{n}"), postgres_work=_unused)
    finally:
        await engine.dispose()
    assert sqlite3.connect(path).execute("SELECT count(*) FROM t").fetchone() == (3,)
    said = [r for r in caplog.records if r.name == "onceonly.db" and "cannot open" in r.message]
    assert len(said) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can make a file another user owns")
async def test_the_gate_file_gets_the_database_files_owner_and_mode(tmp_path: Path) -> None:
    """A hub started once as root must not leave a gate file its own user cannot open."""
    path = tmp_path / "owned.db"
    sqlite3.connect(path).close()
    os.chown(path, 65534, 65534)
    os.chmod(path, 0o640)
    engine = make_engine(f"sqlite:///{path}")
    try:
        await write_in_one_call(engine, sqlite_work=_create, postgres_work=_unused)
    finally:
        await engine.dispose()
    made = os.stat(f"{path}{WRITERS_SUFFIX}")
    assert (made.st_uid, made.st_gid) == (65534, 65534)
    assert made.st_mode & 0o777 == 0o640 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
