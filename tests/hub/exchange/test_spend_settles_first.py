"""A record query whose facts read fails is refused only once its DPoP proof's spend
has settled (decision 0043): the spend commits without its own flush, so the refusal's
flushed audit commit must come after it. Real register, real SQLite database."""

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa

from onceonly.hub.auth.jti_register import JtiRegister
from onceonly.hub.db import make_engine
from onceonly.hub.exchange import repository, service
from onceonly.hub.kit.clock import SYSTEM_CLOCK

from tests.hub_testing import migrated_sqlite

pytestmark = pytest.mark.anyio

LATER = datetime(2999, 1, 1, tzinfo=UTC)


class _ReadFailed(Exception):
    pass


async def test_a_failed_read_is_raised_after_the_spend_committed(
    sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(migrated_sqlite(sqlite_template, tmp_path))
    register = JtiRegister(engine)
    settled: list[str] = []
    spend = register.spend

    async def slow_spend(key: str, **kwargs: Any) -> bool:
        await asyncio.sleep(0.2)  # the register's writer busy with the batch before
        fresh = await spend(key, **kwargs)
        settled.append(key)
        return fresh

    async def read_fails(*_args: Any, **_kwargs: Any) -> None:
        raise _ReadFailed

    monkeypatch.setattr(register, "spend", slow_spend)
    monkeypatch.setattr(service, "_read_facts", read_fails)
    caller = cast(Any, type("Caller", (), {"proof_key": "proof-1", "proof_expires": LATER}))
    context = cast(Any, type("Context", (), {"jtis": register, "engine": engine}))
    await register.start()
    try:
        with pytest.raises(_ReadFailed):
            await service._facts_and_proof(
                ("item", "client", "department", "purpose", "token"),
                caller=caller,
                cache=repository.FactsCache(),
                context=context,
                clock=SYSTEM_CLOCK,
            )
        assert settled == ["proof-1"]  # settled before the refusal went on its way
    finally:
        await register.stop()
        async with engine.connect() as conn:
            spent = set((await conn.execute(sa.text("SELECT key FROM used_jtis"))).scalars())
        await engine.dispose()
    assert spent == {"proof-1"}
