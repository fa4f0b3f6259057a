"""The checkpointer signs only a tree that extends its latest checkpoint, on SQLite and
PostgreSQL: a stored subtree hash changed or lost stops the signing, raises the alarm
that /readyz reports, is logged once, and the signing resumes once the tree is repaired.
"""

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from onceonly.hub.audit import leaves
from onceonly.hub.audit.checkpoints import Checkpointer, load_signer
from onceonly.hub.audit.service import AuditLog
from onceonly.hub.db import make_engine, make_sync_engine
from onceonly.hub.kit.problems import Unavailable

from tests.hub_testing import RunningHub, running_hub, wait_until

ORIGIN = "hub.test/audit"
ROUND = 0.2  # a round's bound in these tests (production: 5 s)
FORGED = hashlib.sha256(b"forged").digest()


def _entry(n: int) -> dict[str, Any]:
    return leaves.build_entry(
        time=datetime.now(UTC), action="record.query", outcome="ok", request_id=f"r{n}"
    )


async def _append(engine: AsyncEngine, count: int) -> None:
    log = AuditLog(engine, batch_size=16)
    await log.start()
    try:
        for n in range(count):
            await log.append(_entry(n))
    finally:
        await log.stop()


def _append_sync(url: str, count: int) -> None:
    """Append through a writer of its own: another hub process sharing the database."""

    async def run() -> None:
        engine = make_engine(url)
        try:
            await _append(engine, count)
        finally:
            await engine.dispose()

    asyncio.run(run())


def _execute(url: str, statement: str, **params: Any) -> Any:
    engine = make_sync_engine(url)
    with engine.begin() as conn:
        result = conn.execute(sa.text(statement), params)
        rows = result.all() if result.returns_rows else None
    engine.dispose()
    return rows


def _node(url: str, level: int, idx: int) -> bytes:
    rows = _execute(
        url, "SELECT hash FROM audit_nodes WHERE level = :l AND idx = :i", l=level, i=idx
    )
    return bytes(rows[0][0])


def _set_node(url: str, level: int, idx: int, value: bytes) -> None:
    _execute(
        url,
        "UPDATE audit_nodes SET hash = :h WHERE level = :l AND idx = :i",
        h=value,
        l=level,
        i=idx,
    )


def _sizes(url: str) -> list[int]:
    return [int(r[0]) for r in _execute(url, "SELECT tree_size FROM audit_checkpoints")]


@pytest.fixture
def hub_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The hub's log records, each once (whether or not its logging propagates)."""
    logger = logging.getLogger("onceonly")
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="onceonly"):
            yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        logger.propagate = propagate


@pytest.mark.anyio
async def test_the_checkpointer_stores_a_checkpoint_before_the_hub_serves(
    database_url: str, tmp_path: Path
) -> None:
    """Its first round is done when start() returns: the hub never hands out a signed
    note that is not stored, which later rounds could not hold the tree to (before,
    a first round slowed by another writer left /v1/audit/checkpoint signing the tree
    on the fly, and a subtree forged meanwhile went unnoticed)."""
    async with _checkpointer(database_url, tmp_path, interval=3600) as (engine, checkpointer):
        await _append(engine, 3)
        await checkpointer.start()
        assert _sizes(database_url) == [3]


@asynccontextmanager
async def _checkpointer(
    url: str, keys_dir: Path, **options: Any
) -> AsyncIterator[tuple[AsyncEngine, Checkpointer]]:
    """A checkpointer of its own on ``url`` (stopped, and its engine disposed, after)."""
    engine = make_engine(url)
    signer = load_signer(keys_dir=keys_dir, origin=ORIGIN, create=True)
    checkpointer = Checkpointer(engine, signer=signer, **options)
    try:
        yield engine, checkpointer
    finally:
        await checkpointer.stop()
        await engine.dispose()


@contextmanager
def _write_lock_held(url: str) -> Iterator[None]:
    """Another session holds the lock that storing a checkpoint needs, until the block
    ends (an index being built, a migration)."""
    engine = make_sync_engine(url)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql("LOCK TABLE audit_checkpoints IN EXCLUSIVE MODE")
            held.set()
            release.wait(30)
        engine.dispose()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        assert held.wait(10)
        yield
    finally:
        release.set()
        thread.join(30)


@pytest.mark.anyio
async def test_a_lock_on_the_checkpoints_delays_the_start_by_at_most_the_first_round(
    database_url: str, tmp_path: Path
) -> None:
    """A lock held on the checkpoints' table (an index being built, a migration) does
    not hold the hub's start for longer than the first round's bound; it is not ready,
    and hands out no checkpoint, until a round stores one."""
    if database_url.startswith("sqlite"):
        pytest.skip(
            "on SQLite the wait is SQLite's busy timeout (10 s), and a cancelled statement"
            " ends only when aiosqlite's thread returns from it; the start already takes"
            " SQLite's write lock before (reseal_totp_secrets)"
        )
    async with _checkpointer(database_url, tmp_path, interval=0.05, round_seconds=ROUND) as (
        engine,
        checkpointer,
    ):
        await _append(engine, 3)
        with _write_lock_held(database_url):  # released only once the start has returned
            started = time.monotonic()
            await asyncio.wait_for(checkpointer.start(), 10)  # unbounded: it would wait forever
            assert time.monotonic() - started < ROUND + 2.5
            assert not checkpointer.stored
            async with AsyncSession(engine) as session:
                with pytest.raises(Unavailable, match="no checkpoint of the audit log is stored"):
                    await checkpointer.latest_note(session)
        await asyncio.wait_for(_until(lambda: checkpointer.stored), 10)
        assert _sizes(database_url) == [3]


@pytest.mark.anyio
async def test_a_lock_on_the_checkpoints_ends_a_later_round_which_is_retried(
    database_url: str, tmp_path: Path, hub_log: pytest.LogCaptureFixture
) -> None:
    """A round after the first waits no longer than the first: a lock held on the
    checkpoints' table ends it, it is logged, and the task signs at a later interval
    once the lock is gone (before, a later round waited on the lock for as long as it
    was held, and the task with it)."""
    if database_url.startswith("sqlite"):
        pytest.skip("on SQLite the wait is SQLite's busy timeout (10 s), as above")
    async with _checkpointer(database_url, tmp_path, interval=0.05, round_seconds=ROUND) as (
        engine,
        checkpointer,
    ):
        await _append(engine, 3)
        await checkpointer.start()
        assert _sizes(database_url) == [3]
        with _write_lock_held(database_url):
            await _append(engine, 2)
            await asyncio.wait_for(_until(lambda: _timed_out_rounds(hub_log) >= 2), 10)
            assert _sizes(database_url) == [3]
        await asyncio.wait_for(_until(lambda: sorted(_sizes(database_url)) == [3, 5]), 10)


def _timed_out_rounds(caplog: pytest.LogCaptureFixture) -> int:
    return sum("audit checkpoint did not finish" in r.getMessage() for r in caplog.records)


@pytest.mark.anyio
async def test_no_checkpoint_is_handed_out_that_is_not_stored(
    database_url: str, tmp_path: Path
) -> None:
    async with _checkpointer(database_url, tmp_path, interval=3600) as (engine, checkpointer):
        await _append(engine, 3)
        _refuse_checkpoints(database_url, refuse=True)
        await checkpointer.start()  # its round fails, and says so in the log
        assert not checkpointer.stored
        async with AsyncSession(engine) as session:
            with pytest.raises(Unavailable):
                await checkpointer.latest_note(session)
        _refuse_checkpoints(database_url, refuse=False)
        await checkpointer.checkpoint()  # the task's next round
        async with AsyncSession(engine) as session:
            note = await checkpointer.latest_note(session)
        assert note.split("\n")[1] == "3"
        assert _sizes(database_url) == [3]
        assert checkpointer.stored


def _refuse_checkpoints(url: str, *, refuse: bool) -> None:
    """A trigger that makes every insert of a checkpoint fail (a passing fault)."""
    if url.startswith("sqlite"):
        statements = (
            [
                "CREATE TRIGGER refuse BEFORE INSERT ON audit_checkpoints"
                " BEGIN SELECT RAISE(ABORT, 'refused'); END"
            ]
            if refuse
            else ["DROP TRIGGER refuse"]
        )
    else:
        statements = (
            [
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'refused'; END $$",
                "CREATE TRIGGER refuse BEFORE INSERT ON audit_checkpoints"
                " FOR EACH ROW EXECUTE FUNCTION refuse()",
            ]
            if refuse
            else ["DROP TRIGGER refuse ON audit_checkpoints", "DROP FUNCTION refuse()"]
        )
    engine = make_sync_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    engine.dispose()


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.02)


@pytest.mark.anyio
async def test_the_checkpointer_refuses_a_tree_that_does_not_extend_its_checkpoint(
    database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url)
    signer = load_signer(keys_dir=tmp_path, origin=ORIGIN, create=True)
    checkpointer = Checkpointer(engine, signer=signer, interval=1)
    try:
        await _append(engine, 8)
        assert (await checkpointer.checkpoint()) is not None
        assert checkpointer.alarm is None
        honest = _node(database_url, 3, 0)  # entries 0-7: the root of 8
        _set_node(database_url, 3, 0, FORGED)
        assert await checkpointer.checkpoint() is None  # even before the log grows
        assert "does not extend the checkpoint of 8 entries" in str(checkpointer.alarm)
        await _append(engine, 4)
        assert await checkpointer.checkpoint() is None
        assert _sizes(database_url) == [8]
        _set_node(database_url, 3, 0, honest)
        signed = await checkpointer.checkpoint()
        assert signed is not None
        assert signed.tree_size == 12
        assert checkpointer.alarm is None
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("damage", "appended", "alarm"),
    [
        pytest.param(
            "DELETE FROM audit_nodes WHERE level = 3 AND idx = 0",
            0,
            "the stored log lacks the subtree (3, 0) of entries 0-7",
            id="a node of the root lost",
        ),
        pytest.param(
            "DELETE FROM audit_entries WHERE idx = 8",
            0,
            "the log has fewer entries than its checkpoint of 9",
            id="the last entry lost",
        ),
        pytest.param(
            "DELETE FROM audit_entries WHERE idx = 8",
            7,
            "the stored tree does not extend the checkpoint of 9 entries",
            id="the last entry replaced",
        ),
    ],
)
@pytest.mark.anyio
async def test_a_lost_or_replaced_entry_or_node_stops_the_checkpoints(
    database_url: str, tmp_path: Path, damage: str, appended: int, alarm: str
) -> None:
    engine = make_engine(database_url)
    signer = load_signer(keys_dir=tmp_path, origin=ORIGIN, create=True)
    checkpointer = Checkpointer(engine, signer=signer, interval=1)
    try:
        await _append(engine, 9)
        await checkpointer.checkpoint()
        _execute(database_url, damage)
        await _append(engine, appended)
        assert await checkpointer.checkpoint() is None
        assert alarm in str(checkpointer.alarm)
        assert _sizes(database_url) == [9]
    finally:
        await engine.dispose()


def _checkpoint_size(hub: RunningHub) -> int:
    return int(httpx.get(f"{hub.url}/v1/audit/checkpoint").text.split("\n")[1])


def test_a_hub_whose_tree_no_longer_extends_its_checkpoint_is_not_ready(
    database_url: str, tmp_path: Path, hub_log: pytest.LogCaptureFixture
) -> None:
    with running_hub(
        database_url=database_url,
        data_dir=tmp_path / "hub",
        checkpoint_interval=0.02,
        audit_origin=ORIGIN,
    ) as hub:
        _append_sync(database_url, 8)
        wait_until(lambda: _checkpoint_size(hub) == 8, what="no checkpoint of 8")
        assert 8 in _sizes(database_url)  # served, so stored: the promise the tree is held to
        assert httpx.get(f"{hub.url}/readyz").status_code == 200
        honest = _node(database_url, 3, 0)
        _set_node(database_url, 3, 0, FORGED)
        _append_sync(database_url, 4)
        try:
            wait_until(lambda: httpx.get(f"{hub.url}/readyz").status_code == 503)
        except AssertionError:  # what the checkpointer said (hub_log keeps it from pytest's report)
            raise AssertionError(f"still ready; the hub logged: {hub_log.text!r}") from None
        readiness = httpx.get(f"{hub.url}/readyz").json()
        assert "the audit checkpointer refuses to sign" in readiness["detail"]
        time.sleep(0.5)  # some 25 rounds of the checkpointer (its interval is 0.02 s)
        assert _checkpoint_size(hub) == 8
        assert max(_sizes(database_url)) == 8
        stopped = [r for r in hub_log.records if "checkpoints stopped" in r.getMessage()]
        assert len(stopped) == 1, "logged once, not every round"
        assert stopped[0].levelno == logging.ERROR

        _set_node(database_url, 3, 0, honest)
        wait_until(lambda: _checkpoint_size(hub) == 12, what="no checkpoint of 12 after the repair")
        assert httpx.get(f"{hub.url}/readyz").status_code == 200
        assert any("checkpoints resumed" in r.getMessage() for r in hub_log.records)
