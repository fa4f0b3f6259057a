"""An entry the store refuses for what it holds fails alone (decision 0044).

Its batch is committed again in halves: every other entry of it gets its receipt, the
log stays dense and its stored tree verifies, the writer stays healthy and no batch
counts as failed. Before, the whole batch failed after five tries, so one request
with a value the store refuses failed every request batched with it and turned
``/readyz`` red. SQLite and PostgreSQL.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from onceonly.hub.audit import leaves, merkle, tree
from onceonly.hub.audit.exceptions import AuditUnavailable
from onceonly.hub.audit.service import AuditLog, Receipt, store_refusal
from onceonly.hub.db import make_engine, session_factory
from onceonly.hub.ops import metrics

from tests.hub.captured_logs import records_of

pytestmark = pytest.mark.anyio

START = datetime(2026, 12, 7, 3, 0, 0, tzinfo=UTC)
SUBJECT = "5" * 64  # a pseudonym: it must not reach the log line of a refusal


def _entry(n: int) -> dict[str, Any]:
    return leaves.build_entry(
        time=START + timedelta(milliseconds=n),
        action="record.query",
        outcome="ok",
        request_id=f"r{n}",
        client="tax-adapter",
        item="person.residential-address",
        subject=SUBJECT,
    )


def _without_action(entry: dict[str, Any]) -> dict[str, Any]:
    """Refused by both stores: the action column is NOT NULL (a bug's entry)."""
    return {**entry, "action": None}


def _long_item(entry: dict[str, Any]) -> dict[str, Any]:
    """Refused by PostgreSQL only: an item longer than its column (128), as a console
    path could put it there before (test_audit_values_from_requests.py)."""
    return {**entry, "item": "person." + "x" * 200}


POISONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "not-null": _without_action,
    "too-long": _long_item,
}


def _refused_by(engine: AsyncEngine, poison: str) -> bool:
    return poison == "not-null" or engine.dialect.name == "postgresql"


async def _append_together(
    log: AuditLog, entries: list[dict[str, Any]]
) -> list[Receipt | BaseException]:
    """Hand every entry to the writer before it wakes: one batch."""
    return await asyncio.wait_for(
        asyncio.gather(*(log.append(entry) for entry in entries), return_exceptions=True), 30
    )


async def _stored_leaves(engine: AsyncEngine) -> list[tuple[int, bytes, bytes]]:
    async with engine.connect() as conn:
        query = sa.text("SELECT idx, leaf, leaf_hash FROM audit_entries ORDER BY idx")
        return [(int(i), bytes(leaf), bytes(h)) for i, leaf, h in await conn.execute(query)]


async def _tree_problems(engine: AsyncEngine) -> tuple[list[str], bytes]:
    """check_nodes's report of the stored tree, and the root the stored nodes give."""
    problems: list[str] = []
    sessions = session_factory(engine)
    await tree.check_nodes(sessions, report=problems.append)
    async with sessions() as session:
        root = await tree.root_at(session, await tree.current_size(session))
    return problems, root


@pytest.fixture
def hub_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The hub's warnings and errors, once each: caplog's handler on the "onceonly"
    logger only (the hub's logging configuration may stop its propagation)."""
    with records_of(caplog, "onceonly", logging.WARNING) as captured:
        yield captured


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.mark.parametrize("poison", sorted(POISONS))
@pytest.mark.parametrize("poisoned", [[0], [6], [11], [2, 3, 9]], ids=str)
async def test_a_refused_entry_fails_alone_and_its_batch_commits_dense_with_a_sound_tree(
    engine: AsyncEngine, poison: str, poisoned: list[int], hub_log: pytest.LogCaptureFixture
) -> None:
    await _seed(engine, 5)  # the batch starts inside a subtree: frontiers of every shape
    entries = [_entry(n) for n in range(12)]
    for n in poisoned:
        entries[n] = POISONS[poison](entries[n])
    log = AuditLog(engine, batch_size=64)
    await log.start()
    try:
        outcomes = await _append_together(log, entries)
        writer = log.writer
        assert (log.healthy, writer.failed_batches) == (True, 0)
        refused = [n for n in poisoned if _refused_by(engine, poison)]
        assert writer.refused_items == len(refused)
        assert _scraped(log, "onceonly_audit_entries_refused") == len(refused)
        assert _scraped(log, "onceonly_audit_commit_failures") == 0
        after = await log.append(_entry(99))  # the writer goes on
    finally:
        await log.stop()
    stored = await _stored_leaves(engine)
    problems, root = await _tree_problems(engine)
    kept = [n for n in range(12) if n not in refused]
    for n, outcome in enumerate(outcomes):
        assert isinstance(outcome, AuditUnavailable if n in refused else Receipt), (n, outcome)
    receipts = [outcome for outcome in outcomes if isinstance(outcome, Receipt)]
    assert [r.index for r in receipts] == list(range(5, 5 + len(kept)))  # dense, in order
    assert [leaf for _, leaf, _ in stored[5:-1]] == [leaves.leaf_bytes(entries[n]) for n in kept]
    assert [i for i, _, _ in stored] == list(range(len(stored)))
    assert after.index == len(stored) - 1 == 5 + len(kept)
    assert problems == []
    assert root == merkle.root_of(leaf_hash for _, _, leaf_hash in stored)
    messages = [record.getMessage() for record in hub_log.records]
    assert len([m for m in messages if "refused an item" in m]) == len(refused)
    assert SUBJECT not in hub_log.text  # nothing of the entry, tracebacks included
    assert "xxxx" not in hub_log.text
    assert not [m for m in messages if "trying again" in m]  # a refused batch is not tried again


def _scraped(log: AuditLog, family: str) -> float:
    """A counter's value as /metrics reads it from the writer at a scrape."""
    (found,) = [f for f in metrics._writer_families(log) if f.name == family]
    (sample,) = [s for s in found.samples if s.name == family + "_total"]
    return sample.value


async def _seed(engine: AsyncEngine, count: int) -> None:
    log = AuditLog(engine, batch_size=64)
    await log.start()
    try:
        await _append_together(log, [_entry(1000 + n) for n in range(count)])
    finally:
        await log.stop()


async def test_a_database_gone_is_no_refusal_and_fails_the_batch_as_before(
    database_url: str,
) -> None:
    """Not split into a transaction per entry: one failed batch, the writer unhealthy."""
    gone = make_engine(_unreachable(database_url))
    log = AuditLog(gone, batch_size=64)
    await log.start()
    try:
        outcomes = await _append_together(log, [_entry(n) for n in range(6)])
        assert all(isinstance(outcome, AuditUnavailable) for outcome in outcomes), outcomes
        assert (log.healthy, log.writer.failed_batches, log.writer.refused_items) == (False, 1, 0)
    finally:
        await log.stop()
        await gone.dispose()


async def test_a_missing_table_is_no_refusal_and_fails_the_batch_as_before(
    engine: AsyncEngine,
) -> None:
    log = AuditLog(engine, batch_size=64)
    await log.start()
    async with engine.begin() as conn:
        await conn.execute(sa.text("ALTER TABLE audit_entries RENAME TO audit_entries_away"))
    try:
        outcomes = await _append_together(log, [_entry(n) for n in range(6)])
        assert all(isinstance(outcome, AuditUnavailable) for outcome in outcomes), outcomes
        assert (log.healthy, log.writer.failed_batches, log.writer.refused_items) == (False, 1, 0)
    finally:
        async with engine.begin() as conn:
            await conn.execute(sa.text("ALTER TABLE audit_entries_away RENAME TO audit_entries"))
        await log.stop()


def _unreachable(url: str) -> str:
    if url.startswith("sqlite"):
        return "sqlite:////nonexistent-directory/hub.db"
    return "postgresql://127.0.0.1:1/onceonly"


async def test_a_lost_race_on_the_index_is_no_refusal(engine: AsyncEngine) -> None:
    """The primary key's duplicate is another writer's entry at that index: retried."""
    insert = sa.text(
        "INSERT INTO audit_entries (idx, leaf, leaf_hash, time, action, outcome)"
        " VALUES (0, :leaf, :leaf, :time, 'x', 'ok')"
    )
    async with engine.begin() as conn:
        await conn.execute(insert, {"leaf": b"first", "time": START})
    with pytest.raises(sa.exc.IntegrityError) as duplicate:
        async with engine.begin() as conn:
            await conn.execute(insert, {"leaf": b"second", "time": START})
    assert store_refusal(duplicate.value) is None
