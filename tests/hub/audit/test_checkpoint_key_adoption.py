"""A replica still running when another one was rotated and restarted adopts the new
checkpoint key from its keys directory instead of raising the tampering alarm (decision
0093); a key it cannot account for still raises it, once, and a retired key is never
signed with. Two checkpointers on one database, as two replicas (or two workers of one
``serve --workers 2``) are, on SQLite and PostgreSQL."""

import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from onceonly.hub.audit import repository, tree
from onceonly.hub.audit.checkpoints import (
    KEY_FILE,
    RELOAD_SECONDS,
    RETIRED_FOLDER,
    Checkpointer,
    load_signer,
    rotate_signer,
)
from onceonly.hub.audit.models import AuditCheckpoint
from onceonly.hub.audit.notes import Checkpoint, Signer, Verifier, read_note, signed_by
from onceonly.hub.db import make_engine
from onceonly.hub.kit.clock import ManualClock

from tests.hub.audit.test_audit_checkpoints import (  # noqa: F401  # hub_log: a fixture
    ORIGIN,
    _append,
    _sizes,
    hub_log,
)
from tests.hub.audit.test_audit_verify import CHECKPOINT_INTERVAL, _entry, append
from tests.hub_testing import running_hub, wait_until

STOPPED = "audit checkpoints stopped"


@asynccontextmanager
async def _checkpointer(
    url: str, keys_dir: Path, **options: Any
) -> AsyncIterator[tuple[AsyncEngine, Checkpointer]]:
    """A replica's checkpointer on ``url``, its key loaded from ``keys_dir`` and read
    again from there, as the hub's is (test_audit_checkpoints' helper does not read it
    again)."""
    engine = make_engine(url)
    signer = load_signer(keys_dir=keys_dir, origin=ORIGIN, create=True)
    checkpointer = Checkpointer(engine, signer=signer, keys_dir=keys_dir, **options)
    try:
        yield engine, checkpointer
    finally:
        await checkpointer.stop()
        await engine.dispose()


def _rotate(keys_dir: Path) -> Verifier:
    """``onceonly keys rotate-checkpoint`` on ``keys_dir``: the new verifier key."""
    return rotate_signer(keys_dir=keys_dir, origin=ORIGIN, now=datetime.now(UTC)).signer.verifier


async def _latest(engine: AsyncEngine) -> AuditCheckpoint:
    async with engine.connect() as conn:
        latest = await repository.latest_checkpoint(conn)
    assert latest is not None
    return latest


def _signers(note: str) -> int:
    return len(read_note(note)[1])


async def _sign_as(engine: AsyncEngine, signer: Signer) -> None:
    """A checkpoint of the whole tree signed by ``signer`` only: another replica's."""
    async with engine.connect() as conn:
        size = await tree.current_size(conn)
        root = await tree.root_at(conn, size)
    note = signer.sign(Checkpoint(signer.name, size, root).text())
    checkpoint = AuditCheckpoint(tree_size=size, root=root, note=note, time=datetime.now(UTC))
    await repository.store_checkpoint(engine, checkpoint)


def _stopped(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(STOPPED)]


@pytest.mark.anyio
async def test_running_workers_adopt_the_key_a_restarted_replica_signs_with(
    database_url: str,
    tmp_path: Path,
    hub_log: pytest.LogCaptureFixture,  # noqa: F811  # the fixture imported above
) -> None:
    """The reviewer's case: two workers of hub A and hub B share one keys directory; the
    key is rotated and only B is restarted. B cosigns, then signs the next checkpoint
    with the new key only; each of A's workers then signs with the new key too, is not
    alarmed, and says so once at INFO (before: each raised the tampering alarm and
    signed nothing until restarted)."""
    hub_log.set_level(logging.INFO, logger="onceonly")
    options = {"interval": 3600}
    async with (
        _checkpointer(database_url, tmp_path, **options) as (engine, worker_1),
        _checkpointer(database_url, tmp_path, **options) as (_, worker_2),
    ):
        old = worker_1.signer.verifier
        await _append(engine, 3)
        await worker_1.checkpoint()
        new = _rotate(tmp_path)
        async with _checkpointer(database_url, tmp_path, **options) as (_, restarted):
            await restarted.checkpoint()  # cosigns 3
            await _append(engine, 2)
            await restarted.checkpoint()  # 5, the new key's only
        assert signed_by((await _latest(engine)).note, [old]) is None
        for worker, grows_to in ((worker_1, 7), (worker_2, 9)):
            await worker.checkpoint()
            assert worker.alarm is None
            assert worker.signer.verifier == new
            assert old in worker.signer.retired
            await _append(engine, 2)
            assert (await worker.checkpoint()) is not None
            latest = await _latest(engine)
            assert latest.tree_size == grows_to
            assert signed_by(latest.note, [new]) == new
            assert _signers(latest.note) == 1
    assert sorted(_sizes(database_url)) == [3, 5, 7, 9]
    assert not _stopped(hub_log)
    adopted = [r for r in hub_log.records if "signs with the current checkpoint key" in r.message]
    assert [r.levelno for r in adopted] == [logging.INFO, logging.INFO]
    assert all(new.key_id.hex() in r.getMessage() for r in adopted)


@pytest.mark.anyio
async def test_a_replica_on_the_old_key_adopts_the_new_one_from_a_cosigned_checkpoint(
    database_url: str, tmp_path: Path
) -> None:
    """The reverse window: the replica not yet restarted meets the latest checkpoint
    cosigned by a restarted one (old key and new): it signs its next checkpoint with the
    new key alone, not with the old one that the directory now lists as retired."""
    options = {"interval": 3600}
    async with _checkpointer(database_url, tmp_path, **options) as (engine, running):
        await _append(engine, 3)
        await running.checkpoint()
        old, new = running.signer.verifier, _rotate(tmp_path)
        async with _checkpointer(database_url, tmp_path, **options) as (_, restarted):
            await restarted.checkpoint()
        assert _signers((await _latest(engine)).note) == 2
        await _append(engine, 2)
        await running.checkpoint()
        latest = await _latest(engine)
        assert latest.tree_size == 5
        assert signed_by(latest.note, [old]) is None
        assert signed_by(latest.note, [new]) == new
        assert running.alarm is None


@pytest.mark.anyio
async def test_the_alarm_stands_until_the_keys_directory_accounts_for_the_checkpoint(
    database_url: str,
    tmp_path: Path,
    hub_log: pytest.LogCaptureFixture,  # noqa: F811  # the fixture imported above
) -> None:
    """Replicas with keys directories of their own (a Kubernetes Secret updated in the
    pods some time after): a key on disk that did not sign the other replica's
    checkpoint, or a key file being replaced, leaves the alarm raised (no failed round);
    the directory is read again at most once every RELOAD_SECONDS; once it holds the key
    that signed, the replica adopts it and resumes."""
    clock = ManualClock()
    mine, theirs = tmp_path / "a", tmp_path / "b"
    options = {"interval": 3600, "clock": clock}
    async with _checkpointer(database_url, mine, **options) as (engine, replica):
        await _append(engine, 3)
        await replica.checkpoint()
        shutil.copytree(mine, theirs)
        new = _rotate(theirs)
        await _append(engine, 2)
        await _sign_as(engine, load_signer(keys_dir=theirs, origin=ORIGIN, create=False))

        wrong = _rotate(mine)  # a key that did not sign it
        await replica.checkpoint()
        assert replica.alarm is not None
        assert replica.signer.verifier not in (new, wrong)
        (mine / KEY_FILE).write_text('{"kty": "OKP", "crv"')  # being replaced
        clock.advance(RELOAD_SECONDS)
        await replica.checkpoint()
        assert replica.alarm is not None

        shutil.copy(theirs / KEY_FILE, mine / KEY_FILE)
        for kept in (theirs / RETIRED_FOLDER).iterdir():
            shutil.copy(kept, mine / RETIRED_FOLDER / kept.name)
        await replica.checkpoint()  # read less than RELOAD_SECONDS ago
        assert replica.alarm is not None
        clock.advance(RELOAD_SECONDS)
        await replica.checkpoint()
        assert replica.alarm is None
        assert replica.signer.verifier == new
        await _append(engine, 2)
        assert (await replica.checkpoint()) is not None
    assert sorted(_sizes(database_url)) == [3, 5, 7]
    [logged] = _stopped(hub_log)  # one problem: this key is retired, the other unknown
    assert "is retired" in logged
    assert "audit checkpoint failed" not in hub_log.text
    assert "audit checkpoints resumed" in hub_log.text


@pytest.mark.anyio
async def test_a_key_the_directory_lists_as_retired_is_never_signed_with(
    database_url: str, tmp_path: Path
) -> None:
    """The directory's current key is one it lists as retired (an old backup restored):
    it is not adopted though it signed the latest checkpoint. And a replica that read its
    own key among the retired ones signs nothing more with it, even once the latest
    checkpoint is one it knows again (before, it went on signing with the old key)."""
    options = {"interval": 3600}
    async with _checkpointer(database_url, tmp_path, **options) as (engine, replica):
        await _append(engine, 3)
        await replica.checkpoint()
        old = replica.signer
        _rotate(tmp_path)
        restored = tmp_path / "restored"
        restored.mkdir()
        backup = load_signer(keys_dir=restored, origin=ORIGIN, create=True)
        (tmp_path / RETIRED_FOLDER / "20200101T000000Z.vkey").write_text(f"{backup.verifier}\n")
        shutil.copy(restored / KEY_FILE, tmp_path / KEY_FILE)
        await _append(engine, 2)
        await _sign_as(engine, backup)

        await replica.checkpoint()
        assert replica.signer.verifier == old.verifier  # the retired backup key not adopted
        assert replica.alarm is not None

        async with engine.begin() as conn:
            await conn.exec_driver_sql("DELETE FROM audit_checkpoints WHERE tree_size = 5")
        await replica.checkpoint()  # the latest is its own again
        assert replica.alarm is not None
        assert "retired" in replica.alarm
        assert _sizes(database_url) == [3]


@pytest.mark.anyio
async def test_the_alarm_is_logged_once_for_several_tree_sizes(
    database_url: str,
    tmp_path: Path,
    hub_log: pytest.LogCaptureFixture,  # noqa: F811  # the fixture imported above
) -> None:
    """Another replica signs larger and larger checkpoints with a key this one cannot
    account for: one ERROR line, and /readyz's reason names the latest size (before,
    one line for each size, in each worker)."""
    async with _checkpointer(database_url, tmp_path, interval=3600) as (
        engine,
        replica,
    ):
        await _append(engine, 3)
        await replica.checkpoint()
        other = load_signer(keys_dir=tmp_path / "other", origin=ORIGIN, create=True)
        for _ in range(4):
            await _append(engine, 2)
            await _sign_as(engine, other)
            await replica.checkpoint()
        assert replica.alarm is not None
        assert "(11 entries)" in replica.alarm
    [logged] = _stopped(hub_log)
    assert "(5 entries)" in logged
    assert _sizes(database_url) == [3, 5, 7, 9, 11]


@pytest.mark.anyio
async def test_a_verifier_key_planted_beside_a_forged_row_is_not_taken(
    database_url: str,
    tmp_path: Path,
    hub_log: pytest.LogCaptureFixture,  # noqa: F811  # the fixture imported above
) -> None:
    """A review (helper-178): whoever can write a checkpoint row and drop a public file
    in checkpoint-retired/ (whose Secret holds "public keys only") silenced the alarm
    within 10 s, and the hub's key cosigned the forged row. A verifier key read at run
    time counts only with a new current key that signed the latest checkpoint itself."""
    clock = ManualClock()
    async with _checkpointer(database_url, tmp_path, interval=3600, clock=clock) as (
        engine,
        replica,
    ):
        await _append(engine, 3)
        await replica.checkpoint()
        mine = replica.signer.verifier
        attacker = load_signer(keys_dir=tmp_path / "attacker", origin=ORIGIN, create=True)
        await _append(engine, 2)
        await _sign_as(engine, attacker)
        await replica.checkpoint()
        assert replica.alarm is not None
        (tmp_path / RETIRED_FOLDER).mkdir(exist_ok=True)
        (tmp_path / RETIRED_FOLDER / "20991231T235959Z.vkey").write_text(f"{attacker.verifier}\n")
        clock.advance(RELOAD_SECONDS + 1)
        await replica.checkpoint()
        assert replica.alarm is not None
        assert replica.signer.verifier == mine
        latest = await _latest(engine)
        assert signed_by(latest.note, [mine]) is None  # never cosigned
    assert _sizes(database_url) == [3, 5]
    assert "audit checkpoints resumed" not in hub_log.text


@pytest.mark.anyio
async def test_a_forged_row_while_a_replica_waits_for_a_rotated_key_is_logged(
    database_url: str,
    tmp_path: Path,
    hub_log: pytest.LogCaptureFixture,  # noqa: F811  # the fixture imported above
) -> None:
    """A review (helper-178): the alarm, logged once per kind, hid a row signed by yet
    another key while this replica waited for the rotated one. One line per set of
    unknown keys: the wait, then the forgery."""
    mine, theirs = tmp_path / "a", tmp_path / "b"
    async with _checkpointer(database_url, mine, interval=3600) as (engine, replica):
        await _append(engine, 3)
        await replica.checkpoint()
        shutil.copytree(mine, theirs)
        _rotate(theirs)  # the other replica's keys are new; this one's not yet
        await _append(engine, 2)
        await _sign_as(engine, load_signer(keys_dir=theirs, origin=ORIGIN, create=False))
        await replica.checkpoint()
        await _append(engine, 2)
        await _sign_as(engine, load_signer(keys_dir=theirs, origin=ORIGIN, create=False))
        await replica.checkpoint()
        assert len(_stopped(hub_log)) == 1  # the wait, once
        forger = load_signer(keys_dir=tmp_path / "forger", origin=ORIGIN, create=True)
        await _append(engine, 2)
        await _sign_as(engine, forger)
        await replica.checkpoint()
    assert len(_stopped(hub_log)) == 2
    assert replica.alarm is not None


def test_a_served_replica_stays_ready_after_another_restarts_on_the_rotated_key(
    database_url: str, tmp_path: Path
) -> None:
    """Two hubs served on one database and one data directory: the key is rotated and
    only the second restarted; once it signs with the new key, the first stays ready and
    hands out the new verifier key (before: /readyz 503 until restarted)."""

    def hub():  # type: ignore[no-untyped-def]
        return running_hub(
            database_url=database_url,
            data_dir=tmp_path,
            checkpoint_interval=CHECKPOINT_INTERVAL,
            audit_origin=ORIGIN,
        )

    with hub() as first:
        append(database_url, [_entry(n) for n in range(3)])
        wait_until(lambda: 3 in _sizes(database_url))
        new = _rotate(first.settings.keys_dir)
        with hub() as second:
            append(database_url, [_entry(n) for n in range(3, 6)])
            wait_until(lambda: 6 in _sizes(database_url))
            assert httpx.get(f"{second.url}/v1/audit/verifier-key").text == f"{new}\n"
            wait_until(lambda: httpx.get(f"{first.url}/v1/audit/verifier-key").text == f"{new}\n")
            append(database_url, [_entry(n) for n in range(6, 9)])
            wait_until(lambda: 9 in _sizes(database_url))
            for _ in range(5):
                assert httpx.get(f"{first.url}/readyz").status_code == 200
