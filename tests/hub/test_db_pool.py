"""The PostgreSQL pool hands out only connections that answer (``db.make_engine``): one
the server closed is replaced before use, one idle for long is pinged first, and one
returned a moment ago with nothing to read is handed out without a round trip
(decision 0040)."""

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from onceonly.hub import db

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

_PID = sa.text("SELECT pg_backend_pid()")


@pytest.fixture
async def engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = db.make_engine(postgres_url)
    yield engine
    await engine.dispose()


async def _last_statement(postgres_url: str, pid: int) -> str:
    """What the backend ``pid`` ran last, seen from another connection."""
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as other:
        cursor = await other.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
        row = await cursor.fetchone()
    assert row is not None
    return str(row[0])


async def _marked(engine: AsyncEngine) -> int:
    """Check a connection out, use it and return it to the pool; its backend."""
    async with engine.connect() as conn:
        pid = int(await conn.scalar(_PID) or 0)
    return pid


async def test_a_connection_the_server_closed_is_replaced_before_it_is_handed_out(
    engine: AsyncEngine, postgres_url: str
) -> None:
    pid = await _marked(engine)
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as other:
        await other.execute("SELECT pg_terminate_backend(%s)", [pid])
        for _ in range(100):  # until the backend is gone
            cursor = await other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
            if await cursor.fetchone() is None:
                break
            await asyncio.sleep(0.01)
    async with engine.connect() as conn:
        assert await conn.scalar(_PID) != pid


async def test_a_connection_returned_a_moment_ago_is_handed_out_without_a_ping(
    engine: AsyncEngine, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 60.0)  # "a moment", on a slow machine too
    pid = await _marked(engine)
    before = await _last_statement(postgres_url, pid)
    async with engine.connect() as conn:
        assert (await conn.get_raw_connection()).driver_connection is not None
        assert await _last_statement(postgres_url, pid) == before


async def test_a_connection_idle_for_long_is_pinged_before_it_is_handed_out(
    engine: AsyncEngine, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = await _marked(engine)
    before = await _last_statement(postgres_url, pid)
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 0.0)
    async with engine.connect() as conn:
        assert (await conn.get_raw_connection()).driver_connection is not None
        assert (before, await _last_statement(postgres_url, pid)) == ("ROLLBACK", ";")
