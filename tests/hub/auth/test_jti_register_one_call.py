"""The single-use register's batch as one call to the driver
(onceonly.hub.db.write_in_one_call): fresh and replayed keys answered as before, rows
stored as SQLAlchemy stores them, the purge in the same transaction, and a failing batch
fails every waiter and spends nothing; on SQLite and PostgreSQL."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from onceonly.hub.auth import repository
from onceonly.hub.auth.jti_register import JtiRegister
from onceonly.hub.db import make_engine
from onceonly.hub.kit.problems import Unavailable

pytestmark = pytest.mark.anyio

LATER = datetime(2999, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


async def _stored(engine: AsyncEngine) -> dict[str, Any]:
    """key -> expires_at as the database holds it (no SQLAlchemy type on the way back)."""
    async with engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT key, expires_at FROM used_jtis"))
        return {str(key): expires for key, expires in rows}


async def test_spends_fresh_keys_once_and_refuses_replays(database_url: str) -> None:
    engine = make_engine(database_url)
    async with engine.begin() as conn:  # spent before, through SQLAlchemy
        await conn.execute(sa.insert(repository.used_table()), [{"key": "k0", "expires_at": LATER}])
    register = JtiRegister(engine, batch_size=64)
    await register.start()
    try:
        keys = ["k0", "k1", "k2", "k1", "k3"]  # k0 replayed, k1 twice in one batch
        answers = await asyncio.gather(*(register.spend(key, expires_at=LATER) for key in keys))
        again = await register.spend("k2", expires_at=LATER)
    finally:
        await register.stop()
    stored = await _stored(engine)
    await engine.dispose()
    assert answers == [False, True, True, False, True]
    assert not again
    assert set(stored) == {"k0", "k1", "k2", "k3"}
    assert len(set(stored.values())) == 1  # bound as SQLAlchemy bound k0's


async def test_a_full_batch_purges_expired_keys_in_its_transaction(database_url: str) -> None:
    """A batch of 100 always purges (probability 1 % a key): keys already expired go,
    those still valid stay."""
    engine = make_engine(database_url)
    past = datetime.now(UTC) - timedelta(minutes=1)
    register = JtiRegister(engine, batch_size=200)
    await register.start()
    try:
        expired = [register.spend(f"old{n}", expires_at=past) for n in range(100)]
        valid = [register.spend(f"new{n}", expires_at=LATER) for n in range(100)]
        answers = await asyncio.gather(*expired, *valid)
    finally:
        await register.stop()
    stored = await _stored(engine)
    await engine.dispose()
    assert all(answers)
    assert set(stored) == {f"new{n}" for n in range(100)}


_REFUSE = {
    "sqlite": [
        "CREATE TRIGGER refuse_k3 BEFORE INSERT ON used_jtis WHEN NEW.key = 'k3'"
        " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_k3() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.key = 'k3' THEN RAISE EXCEPTION 'refused by the test'; END IF;"
        " RETURN NEW; END $$",
        "CREATE TRIGGER refuse_k3 BEFORE INSERT ON used_jtis"
        " FOR EACH ROW EXECUTE FUNCTION refuse_k3()",
    ],
}
_ALLOW = {
    "sqlite": ["DROP TRIGGER refuse_k3"],
    "postgresql": ["DROP TRIGGER refuse_k3 ON used_jtis", "DROP FUNCTION refuse_k3()"],
}


async def _run(engine: AsyncEngine, statements: dict[str, list[str]]) -> None:
    async with engine.begin() as conn:
        for statement in statements[engine.dialect.name]:
            await conn.execute(sa.text(statement))


async def test_a_failing_batch_fails_every_waiter_and_spends_nothing(database_url: str) -> None:
    engine = make_engine(database_url)
    await _run(engine, _REFUSE)
    register = JtiRegister(engine, batch_size=64)
    await register.start()
    try:
        outcomes = await asyncio.gather(
            *(register.spend(f"k{n}", expires_at=LATER) for n in range(6)),
            return_exceptions=True,
        )
        assert all(isinstance(outcome, Unavailable) for outcome in outcomes), outcomes
        assert await _stored(engine) == {}
        await _run(engine, _ALLOW)
        assert await register.spend("k1", expires_at=LATER)
    finally:
        await register.stop()
    stored = await _stored(engine)
    await engine.dispose()
    assert set(stored) == {"k1"}
