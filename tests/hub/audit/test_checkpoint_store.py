"""Storing a signed checkpoint: the first of a size wins, the row reads back as it was
signed, on both stores; on SQLite one trip to the driver's thread behind the write gate
(statement by statement it held SQLite's write lock 6-13 ms a second)."""

from datetime import UTC, datetime

import pytest

from onceonly.hub.audit import repository
from onceonly.hub.audit.models import AuditCheckpoint
from onceonly.hub.db import make_engine

from tests.hub.driver_trips import count_trips

pytestmark = pytest.mark.anyio

SIGNED = datetime(2026, 12, 7, 3, 52, 1, 250000, tzinfo=UTC)


def _checkpoint(size: int, note: str) -> AuditCheckpoint:
    return AuditCheckpoint(tree_size=size, root=bytes(range(32)), note=note, time=SIGNED)


async def test_the_first_checkpoint_of_a_size_is_kept_as_signed(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:  # the pool's connection, made and tuned
            await conn.exec_driver_sql("SELECT 1")
        trips = count_trips(monkeypatch)
        await repository.store_checkpoint(engine, _checkpoint(7, "first"))
        stored_trips = list(trips)
        await repository.store_checkpoint(engine, _checkpoint(7, "second"))  # another replica
        async with engine.connect() as conn:
            latest = await repository.latest_checkpoint(conn)
    finally:
        await engine.dispose()
    assert latest is not None
    assert (latest.tree_size, latest.root, latest.note) == (7, bytes(range(32)), "first")
    assert latest.time.replace(tzinfo=UTC) == SIGNED
    if engine.dialect.name == "sqlite":
        assert stored_trips == ["_in_sqlite_transaction"]
