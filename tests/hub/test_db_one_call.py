"""``db.write_in_one_call`` on SQLite: aiosqlite's private call it relies on, and a
driver connection that stopped under the pool (it is dropped, not handed out again)."""

import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from onceonly.hub.db import make_engine, write_in_one_call

pytestmark = pytest.mark.anyio


async def _unused(driver: object) -> None:
    raise AssertionError("PostgreSQL's work on a SQLite engine")


async def test_the_private_aiosqlite_call_runs_a_function_on_the_drivers_thread(
    tmp_path: Path,
) -> None:
    """pyproject bounds aiosqlite below its next minor release; this names what a new
    release must still have before the bound moves: ``_execute(fn, *args)`` runs ``fn``
    on the connection's thread, and ``_conn`` is its sqlite3 connection."""
    async with aiosqlite.connect(tmp_path / "private.db") as driver:
        db = driver._conn
        assert isinstance(db, sqlite3.Connection)
        assert await driver._execute(lambda: db.execute("SELECT 41 + 1").fetchone()) == (42,)


async def test_a_stopped_driver_connection_is_dropped_and_the_next_write_commits(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'one.db'}")

    def create(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE t (x INTEGER)")

    def insert(db: sqlite3.Connection) -> int:
        db.execute("INSERT INTO t VALUES (1)")
        return int(db.execute("SELECT count(*) FROM t").fetchone()[0])

    try:
        await write_in_one_call(engine, sqlite_work=create, postgres_work=_unused)
        async with engine.connect() as conn:  # the pool's one connection, stopped
            raw = await conn.get_raw_connection()
            await raw.driver_connection.stop()
        with pytest.raises(ValueError, match="closed"):
            await write_in_one_call(engine, sqlite_work=insert, postgres_work=_unused)
        assert await write_in_one_call(engine, sqlite_work=insert, postgres_work=_unused) == 1
    finally:
        await engine.dispose()
