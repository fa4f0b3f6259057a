"""The audit writer: dense, ordered, durable, and correct with several writers.

Two ``AuditLog`` instances on separate engines stand for two hub processes
sharing one database.
"""

import asyncio
import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from onceonly.hub.audit import leaves
from onceonly.hub.audit.exceptions import AuditUnavailable
from onceonly.hub.audit.service import AuditLog, AuditScope
from onceonly.hub.db import make_engine
from onceonly.hub.kit.problems import HubError

pytestmark = pytest.mark.anyio


def _entry(n: int) -> dict[str, object]:
    return leaves.build_entry(
        time=datetime.now(UTC), action="record.query", outcome="ok", request_id=f"r{n}"
    )


async def _stored(engine: AsyncEngine) -> list[tuple[int, bytes, bytes]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT idx, leaf, leaf_hash FROM audit_entries ORDER BY idx")
        )
        return [(int(r[0]), bytes(r[1]), bytes(r[2])) for r in rows]


async def test_concurrent_appends_get_dense_indexes_and_their_own_receipts(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    log = AuditLog(engine, batch_size=50)
    await log.start()
    try:
        receipts = await asyncio.gather(*(log.append(_entry(n)) for n in range(300)))
    finally:
        await log.stop()
    stored = await _stored(engine)
    await engine.dispose()
    assert [row[0] for row in stored] == list(range(300))
    assert sorted(r.index for r in receipts) == list(range(300))
    by_index = {idx: (leaf, leaf_hash) for idx, leaf, leaf_hash in stored}
    for receipt in receipts:
        leaf, leaf_hash = by_index[receipt.index]
        assert receipt.leaf_hash == leaf_hash == leaves.leaf_hash(leaf)


async def test_two_writers_sharing_one_database_keep_the_log_dense(database_url: str) -> None:
    engines = [make_engine(database_url), make_engine(database_url)]
    logs = [AuditLog(engine, batch_size=20) for engine in engines]
    for log in logs:
        await log.start()
    try:
        receipts = await asyncio.gather(*(logs[n % 2].append(_entry(n)) for n in range(200)))
    finally:
        for log in logs:
            await log.stop()
    stored = await _stored(engines[0])
    for engine in engines:
        await engine.dispose()
    assert [row[0] for row in stored] == list(range(200))
    assert len({r.index for r in receipts}) == 200
    request_ids = {leaves_request_id(leaf) for _, leaf, _ in stored}
    assert request_ids == {f"r{n}" for n in range(200)}


def leaves_request_id(leaf: bytes) -> str:
    import json

    return str(json.loads(leaf)["request_id"])


async def test_append_fails_loudly_when_the_database_is_gone(database_url: str) -> None:
    engine = make_engine(database_url)
    log = AuditLog(engine, batch_size=10)
    await log.start()
    async with engine.begin() as conn:
        await conn.execute(sa.text("ALTER TABLE audit_entries RENAME TO audit_entries_away"))
    try:
        with pytest.raises(AuditUnavailable):
            await log.append(_entry(1))
    finally:
        async with engine.begin() as conn:
            await conn.execute(sa.text("ALTER TABLE audit_entries_away RENAME TO audit_entries"))
        await log.stop()
        await engine.dispose()


async def test_append_refuses_when_the_writer_is_not_running(database_url: str) -> None:
    engine = make_engine(database_url)
    log = AuditLog(engine)
    with pytest.raises(AuditUnavailable):
        await log.append(_entry(1))
    await engine.dispose()


async def test_an_entry_that_will_not_serialize_leaves_the_failure_to_be_recorded(
    database_url: str,
) -> None:
    """RFC 8785 takes no integer past 2^53; such an entry never reaches the log, so the
    request's scope must still write its failure (no refusal goes unaudited)."""
    engine = make_engine(database_url)
    log = AuditLog(engine, batch_size=10)
    await log.start()
    try:
        scope = AuditScope(log=log, action="audit.query", request_id="r-big")
        with pytest.raises(ValueError, match="2"):
            await scope.record_success(query={"cursor": 2**60})
        assert not scope.recorded
        receipt = await scope.record_failure(HubError("the entry would not serialize"))
        assert scope.recorded
        (row,) = [r for r in await _stored(engine) if r[0] == receipt.index]
        assert json.loads(row[1])["outcome"] == "failed"
    finally:
        await log.stop()
        await engine.dispose()
