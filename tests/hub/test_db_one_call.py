"""``db.write_in_one_call`` on SQLite: aiosqlite's private call it relies on, and a
driver connection that stopped under the pool (it is dropped, not handed out again)."""

import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from onceonly.hub.db import in_values_lists, insert_rows_now, make_engine, write_in_one_call

from tests.hub.driver_trips import count_trips

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


async def test_a_write_in_one_call_is_one_trip_to_the_drivers_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transaction, and nothing after it: the pool's rollback on return would be a
    second trip (and a second hand-off of the GIL) for a transaction already committed."""
    engine = make_engine(f"sqlite:///{tmp_path / 'trips.db'}")
    try:
        await write_in_one_call(
            engine, sqlite_work=lambda db: db.execute("CREATE TABLE t (x)"), postgres_work=_unused
        )
        trips = count_trips(monkeypatch)
        for _ in range(3):
            await write_in_one_call(
                engine,
                sqlite_work=lambda db: db.execute("INSERT INTO t VALUES (1)"),
                postgres_work=_unused,
            )
        assert trips == ["_in_sqlite_transaction"] * 3
    finally:
        await engine.dispose()


async def test_a_connection_returned_inside_a_transaction_is_still_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a transaction known to be over skips the rollback: one begun on the driver
    behind SQLAlchemy's back, or a write that failed, is rolled back on return."""
    engine = make_engine(f"sqlite:///{tmp_path / 'reset.db'}")
    try:
        await write_in_one_call(
            engine,
            sqlite_work=lambda db: db.execute("CREATE TABLE t (x UNIQUE)"),
            postgres_work=_unused,
        )
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            await raw.driver_connection.execute("BEGIN IMMEDIATE")
            await raw.driver_connection.execute("INSERT INTO t VALUES (1)")
        trips = count_trips(monkeypatch)

        def insert_twice(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO t VALUES (2)")
            db.execute("INSERT INTO t VALUES (2)")

        with pytest.raises(Exception, match="UNIQUE"):
            await write_in_one_call(engine, sqlite_work=insert_twice, postgres_work=_unused)
        assert trips == ["_in_sqlite_transaction", "rollback"]
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            assert not raw.driver_connection.in_transaction
            rows = await raw.driver_connection.execute_fetchall("SELECT x FROM t")
        assert list(rows) == []  # the first insert rolled back, the failed write left nothing
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("count", "limit", "sizes"),
    [
        (1, None, [1]),
        (13, None, [8, 4, 1]),
        (2000, None, [1024, 512, 256, 128, 64, 16]),
        (600, 999, [256, 256, 64, 16, 8]),  # a build with 999 parameters a statement
    ],
)
def test_rows_go_in_as_a_few_values_lists(count: int, limit: int | None, sizes: list[int]) -> None:
    """One statement per power of two in the count (at most 256 rows each), not a step
    per row: each step gives up the GIL, which a driver thread then waits to take back
    while it holds SQLite's write lock."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    if limit is not None:
        db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    sent: list[str] = []
    db.set_trace_callback(sent.append)
    rows = [(k, k * 10) for k in range(count)]
    insert_rows_now(db, "INSERT INTO t (k, n) VALUES (?, ?)", rows)
    assert [statement.count("(") - 1 for statement in sent] == sizes
    assert db.execute("SELECT k, n FROM t ORDER BY k").fetchall() == rows
    upsert = (
        "INSERT INTO t (k, n) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET n = (t.n + excluded.n)"
    )
    insert_rows_now(db, upsert, [(0, 1), (count, 7)])  # one row there, one new
    assert db.execute("SELECT n FROM t WHERE k IN (0, ?) ORDER BY k", (count,)).fetchall() == [
        (1,),
        (7,),
    ]


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t (k, n) VALUES (?, lower(?))",  # a column's SQL bind expression
        "INSERT INTO t (k, n) SELECT ?, ?",
        "INSERT INTO t (k, n) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET n = ?",
    ],
)
def test_a_statement_that_would_not_split_is_refused_at_once(sql: str) -> None:
    """Whatever the row count, one row included: not found wrong under load."""
    for count in (1, 2):
        with pytest.raises(ValueError, match="bare placeholders"):
            in_values_lists(sql, count)
