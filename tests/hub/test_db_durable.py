"""``db.write_in_one_call(durable=False)`` and ``db.write_connection(durable=False)``:
the commit does not wait for its own flush (SQLite ``synchronous=NORMAL``, PostgreSQL
``synchronous_commit = off``) for that one transaction, and the connection is as it was
for the next (decisions 0043 and 0079); and the single-use register asks for a flush
when any spend of its batch does."""

import asyncio
import sqlite3
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from onceonly.hub import db
from onceonly.hub.auth.jti_register import JtiRegister
from onceonly.hub.db import make_engine, write_connection, write_in_one_call

pytestmark = pytest.mark.anyio

LATER = datetime(2999, 1, 1, tzinfo=UTC)


def _sqlite_setting(conn: sqlite3.Connection) -> str:
    return {0: "off", 1: "normal", 2: "full", 3: "extra"}[
        int(conn.execute("PRAGMA synchronous").fetchone()[0])
    ]


async def _postgres_setting(conn: Any) -> str:
    cursor = conn.cursor()
    await cursor.execute("SHOW synchronous_commit")
    row = await cursor.fetchone()
    return str(row[0])


async def _setting(engine: AsyncEngine, *, durable: bool) -> str:
    return await write_in_one_call(
        engine, sqlite_work=_sqlite_setting, postgres_work=_postgres_setting, durable=durable
    )


async def test_only_the_one_transaction_skips_its_flush(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        if engine.dialect.name == "postgresql":  # the test database itself says off
            async with engine.connect() as conn:
                await conn.exec_driver_sql("SET synchronous_commit TO on")
                await conn.commit()
        flushed = "full" if engine.dialect.name == "sqlite" else "on"
        unflushed = "normal" if engine.dialect.name == "sqlite" else "off"
        # One connection, used in turn: each call sees what the one before left.
        seen = [await _setting(engine, durable=durable) for durable in (True, False, True)]
        assert seen == [flushed, unflushed, flushed]
    finally:
        await engine.dispose()


async def _connection_setting(engine: AsyncEngine, *, durable: bool, fail: bool = False) -> str:
    """The setting inside ``write_connection``, whose transaction also writes a row (and
    then raises, when ``fail``)."""
    sql = "PRAGMA synchronous" if engine.dialect.name == "sqlite" else "SHOW synchronous_commit"
    async with write_connection(engine, durable=durable) as conn:
        setting = (await conn.exec_driver_sql(sql)).scalar_one()
        await conn.execute(sa.text("INSERT INTO written (n) VALUES (1)"))
        if fail:
            raise RuntimeError("the work failed")
    names = {0: "off", 1: "normal", 2: "full", 3: "extra"}
    return names[int(setting)] if engine.dialect.name == "sqlite" else str(setting)


async def test_a_write_connection_skips_its_flush_for_its_own_transaction_only(
    database_url: str,
) -> None:
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("DROP TABLE IF EXISTS written"))
            await conn.execute(sa.text("CREATE TABLE written (n INTEGER)"))
            if engine.dialect.name == "postgresql":  # the test database itself says off
                await conn.exec_driver_sql("SET synchronous_commit TO on")
        flushed = "full" if engine.dialect.name == "sqlite" else "on"
        unflushed = "normal" if engine.dialect.name == "sqlite" else "off"
        # One connection (the pool holds one), used in turn: each sees what the one
        # before left, a failed transaction's included.
        seen = [await _connection_setting(engine, durable=durable) for durable in (True, False)]
        with pytest.raises(RuntimeError, match="the work failed"):
            await _connection_setting(engine, durable=False, fail=True)
        seen.append(await _connection_setting(engine, durable=True))
        assert seen == [flushed, unflushed, flushed]
        async with engine.connect() as conn:  # committed, but the failed one's row
            assert (await conn.execute(sa.text("SELECT count(*) FROM written"))).scalar() == 3
    finally:
        async with engine.begin() as conn:
            await conn.execute(sa.text("DROP TABLE IF EXISTS written"))
        await engine.dispose()


async def test_a_batch_is_flushed_when_any_of_its_spends_asks(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[bool] = []
    real = db.write_in_one_call

    async def recording(engine: AsyncEngine, **kwargs: Any) -> Any:
        asked.append(kwargs["durable"])
        return await real(engine, **kwargs)

    monkeypatch.setattr(db, "write_in_one_call", recording)
    engine = make_engine(database_url)
    register = JtiRegister(engine, batch_size=64)
    await register.start()
    try:
        assert await register.spend("a", expires_at=LATER)
        assert await register.spend("b", expires_at=LATER, durable=False)
        both = await asyncio.gather(
            register.spend("c", expires_at=LATER, durable=False),
            register.spend("d", expires_at=LATER),
        )
        assert both == [True, True]
        assert not await register.spend("b", expires_at=LATER, durable=False)  # replay
    finally:
        await register.stop()
        async with engine.connect() as conn:
            stored = set((await conn.execute(sa.text("SELECT key FROM used_jtis"))).scalars())
        await engine.dispose()
    if engine.dialect.name == "sqlite":  # the unflushed batches were written on the loop
        assert (asked, register.here.done) == ([True, True], 2)
    else:
        assert (asked, register.here.done) == ([True, False, True, False], 0)
    assert stored == {"a", "b", "c", "d"}


async def test_without_postgres_work_it_is_for_sqlite_only(database_url: str) -> None:
    """A caller whose PostgreSQL write goes statement by statement gives no
    postgres_work; on PostgreSQL the call says so before it connects."""
    engine = make_engine(database_url)
    try:
        if engine.dialect.name == "postgresql":
            with pytest.raises(ValueError, match="needs postgres_work"):
                await write_in_one_call(engine, sqlite_work=_sqlite_setting)
            assert engine.pool.checkedout() == 0
        else:
            assert await write_in_one_call(engine, sqlite_work=_sqlite_setting) == "full"
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_write_connection_cancelled_while_it_skips_its_flush_is_flushed_again(
    database_url: str,
) -> None:
    """A hostile review of decision 0079: a request cancelled while its connection was
    being set to ``synchronous=NORMAL`` (aiosqlite's thread still runs it) left the
    pooled connection so, and every later transaction on it unflushed."""
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    names = {0: "off", 1: "normal", 2: "full", 3: "extra"}

    async def attempt() -> None:
        async with write_connection(engine, durable=False) as conn:
            await conn.execute(sa.text("SELECT 1"))

    seen = []
    try:
        for turns in range(1, 12):  # cancelled at each of its awaits in turn
            task = asyncio.create_task(attempt())
            for _ in range(turns):
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await asyncio.sleep(0.01)  # what was queued on the driver's thread has run
            async with engine.connect() as conn:  # the next user of the one connection
                level = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar_one()
            seen.append(names[int(level)])
    finally:
        await engine.dispose()
    assert seen == ["full"] * 11  # before: "normal" after some of them
