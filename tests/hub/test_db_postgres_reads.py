"""``db.OneCallRead`` on PostgreSQL: the read opens no transaction, so the connection
goes back to the pool with nothing to roll back, and what psycopg prepared on it stays
prepared (psycopg forgets its prepared statements whenever a connection rolls back)."""

import pytest
import sqlalchemy as sa

from onceonly.hub.db import OneCallRead, make_engine

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

_ONE = OneCallRead(sa.select(sa.literal_column("41 + 1").label("answer")))


async def test_a_one_call_read_leaves_no_transaction_and_autocommit_off(
    postgres_url: str,
) -> None:
    engine = make_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            assert await _ONE.one(conn, {}) == {"answer": 42}
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            assert driver.info.transaction_status.name == "IDLE"
            assert driver.autocommit is False
    finally:
        await engine.dispose()


async def test_statements_prepared_on_a_connection_outlive_a_one_call_read(
    postgres_url: str,
) -> None:
    engine = make_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            await driver.execute("SELECT 7", prepare=True)
            await driver.commit()
            await _ONE.one(conn, {})
        async with engine.connect() as conn:  # the pool's one connection, returned
            prepared = await conn.scalar(sa.text("SELECT count(*) FROM pg_prepared_statements"))
        assert prepared == 1
    finally:
        await engine.dispose()


async def test_a_one_call_read_inside_a_transaction_reads_in_it(postgres_url: str) -> None:
    """Where the caller opened a transaction, the read runs in it: it sees a table that
    exists only there (outside, the read would fail)."""
    engine = make_engine(postgres_url)
    read = OneCallRead(sa.select(sa.func.count().label("n")).select_from(sa.table("only_here")))
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text("CREATE TEMPORARY TABLE only_here (x int)"))
            await conn.execute(sa.text("INSERT INTO only_here VALUES (1)"))
            assert await read.one(conn, {}) == {"n": 1}
            await conn.rollback()
    finally:
        await engine.dispose()
