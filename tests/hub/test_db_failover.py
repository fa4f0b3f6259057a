"""A pooled PostgreSQL connection that died without a word (its server's host vanished in
a failover) is replaced at its first statement, and that statement sent again, when
nothing of the work can have been applied; never after a statement was answered
(``db.make_engine``, ``db.OneCallRead``, ``db.write_in_one_call``; decision 0047).

Between the hub's engine and PostgreSQL runs a TCP proxy on loopback that, on command,
resets every connection it carries (SO_LINGER 0, then close: the hub's next send or
receive on it fails with ECONNRESET) and goes on accepting new ones, as when a standby
takes the old primary's address. Each connection is checked out before the reset, as a
request holds one at that moment; the checkout does not ping it (it was returned a
moment ago and its socket was quiet then)."""

from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from onceonly.hub import db

from tests.hub.pg_proxy import ResettingProxy, through

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

_PID = sa.text("SELECT pg_backend_pid()")


class _Base(DeclarativeBase):
    pass


class _Note(_Base):
    __tablename__ = "failover_notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str]


@pytest.fixture
async def proxy(postgres_url: str) -> AsyncIterator[ResettingProxy]:
    url = make_url(postgres_url)
    proxy = ResettingProxy((url.host or "127.0.0.1", url.port or 5432))
    await proxy.start()
    yield proxy
    await proxy.close()


@pytest.fixture
def notes(postgres_url: str) -> Iterator[None]:
    engine = sa.create_engine(db.sync_url(postgres_url))
    _Base.metadata.create_all(engine)
    yield
    _Base.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture
async def engine(
    postgres_url: str, proxy: ResettingProxy, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AsyncEngine]:
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 60.0)  # returned "a moment ago", however slow
    engine = db.make_engine(through(proxy.port, postgres_url))
    async with engine.connect() as conn:  # one connection in the pool, returned just now
        await conn.scalar(_PID)
    yield engine
    await engine.dispose()


async def _notes(postgres_url: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(postgres_url) as direct:
        cursor = await direct.execute("SELECT text FROM failover_notes ORDER BY id")
        return [text for (text,) in await cursor.fetchall()]


async def test_a_read_on_a_connection_cut_since_its_checkout_is_sent_again(
    engine: AsyncEngine, proxy: ResettingProxy
) -> None:
    async with engine.connect() as conn:
        before = (await conn.get_raw_connection()).driver_connection.info.backend_pid
        proxy.reset()
        assert await conn.scalar(_PID) != before
    assert proxy.accepted == 2


async def test_the_one_call_read_on_a_connection_cut_since_its_checkout_is_sent_again(
    engine: AsyncEngine, proxy: ResettingProxy
) -> None:
    read = db.OneCallRead(sa.select(sa.func.pg_backend_pid().label("pid")))
    async with engine.connect() as conn:
        before = (await conn.get_raw_connection()).driver_connection.info.backend_pid
        proxy.reset()
        assert (await read.one(conn, {}))["pid"] != before
    async with engine.connect() as conn:  # the new connection went back in working order
        assert (await read.one(conn, {}))["pid"] != before
    assert proxy.accepted == 2


async def test_a_session_whose_connection_was_cut_since_its_checkout_commits(
    engine: AsyncEngine, proxy: ResettingProxy, notes: None, postgres_url: str
) -> None:
    async with db.session_factory(engine)() as session:
        await session.connection()  # checked out, as a request holds it
        proxy.reset()
        session.add(_Note(text="written once"))
        await session.commit()
    assert await _notes(postgres_url) == ["written once"]


async def _insert_and_commit(pg: Any) -> int:
    cursor = pg.cursor()
    await cursor.execute("INSERT INTO failover_notes (text) VALUES ('one call') RETURNING id")
    await pg.commit()
    row = await cursor.fetchone()
    return int(row[0])


def _no_sqlite(_conn: Any) -> int:
    raise AssertionError("PostgreSQL only")


async def test_a_write_in_one_call_on_a_connection_cut_since_its_checkout_commits(
    engine: AsyncEngine, proxy: ResettingProxy, notes: None, postgres_url: str
) -> None:
    """The work's BEGIN is sent first, by psycopg's private ``_start_query`` (db._begin):
    this fails if psycopg drops it."""
    pool = engine.pool
    assert pool.checkedin() == 1  # the write checks out the pooled connection
    proxy.reset()
    await db.write_in_one_call(engine, sqlite_work=_no_sqlite, postgres_work=_insert_and_commit)
    await db.write_in_one_call(engine, sqlite_work=_no_sqlite, postgres_work=_insert_and_commit)
    assert await _notes(postgres_url) == ["one call", "one call"]
    assert proxy.accepted == 2


async def test_a_statement_after_one_that_was_answered_is_not_sent_again(
    engine: AsyncEngine, proxy: ResettingProxy
) -> None:
    async with engine.connect() as conn:
        await conn.scalar(_PID)
        proxy.reset()
        with pytest.raises(sa.exc.OperationalError) as failed:
            await conn.scalar(_PID)
        assert failed.value.connection_invalidated
    assert proxy.accepted == 1


async def test_a_write_whose_work_had_an_answer_is_not_sent_again(
    engine: AsyncEngine, proxy: ResettingProxy, notes: None, postgres_url: str
) -> None:
    async def read_cut_write(pg: Any) -> int:
        await (await pg.execute("SELECT 1")).fetchone()
        proxy.reset()
        return await _insert_and_commit(pg)

    with pytest.raises(sa.exc.OperationalError):
        await db.write_in_one_call(engine, sqlite_work=_no_sqlite, postgres_work=read_cut_write)
    assert await _notes(postgres_url) == []
    assert proxy.accepted == 1


async def test_a_statement_is_sent_again_once_at_most(
    engine: AsyncEngine, proxy: ResettingProxy
) -> None:
    async with engine.connect() as conn:
        proxy.cut_new_at_first_statement = True
        proxy.reset()
        with pytest.raises(sa.exc.OperationalError) as failed:
            await conn.scalar(_PID)
        assert failed.value.connection_invalidated
    assert proxy.accepted == 2  # the pooled connection, and one new connection


async def test_a_statement_whose_new_connection_cannot_be_made_fails_with_its_own_error(
    engine: AsyncEngine, proxy: ResettingProxy
) -> None:
    async with engine.connect() as conn:
        proxy.refuse_new = True
        proxy.reset()
        with pytest.raises(sa.exc.OperationalError) as failed:
            await conn.scalar(_PID)
        assert failed.value.connection_invalidated
        assert "could not be made either" in " ".join(getattr(failed.value.orig, "__notes__", []))
    proxy.refuse_new = False
    async with engine.connect() as conn:  # the pool gives a working connection again
        assert await conn.scalar(_PID)
    assert proxy.accepted == 3


async def test_a_connection_pinged_at_its_checkout_is_not_sent_again(
    engine: AsyncEngine, proxy: ResettingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a connection handed out without a ping is: one that answered a ping has
    answered since it was returned (decision 0047)."""
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 0.0)
    async with engine.connect() as conn:
        proxy.reset()
        with pytest.raises(sa.exc.OperationalError):
            await conn.scalar(_PID)
    assert proxy.accepted == 1


async def test_a_statement_after_one_sent_on_the_driver_itself_is_not_sent_again(
    engine: AsyncEngine, proxy: ResettingProxy, notes: None, postgres_url: str
) -> None:
    """A write sent past SQLAlchemy leaves the connection in a transaction: a new
    connection would not hold it (the check beside the mark, which that write does not
    take)."""
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        await driver.execute("INSERT INTO failover_notes (text) VALUES ('on the driver')")
        proxy.reset()
        with pytest.raises(sa.exc.OperationalError):
            await conn.execute(sa.text("INSERT INTO failover_notes (text) VALUES ('after')"))
    assert await _notes(postgres_url) == []
    assert proxy.accepted == 1
