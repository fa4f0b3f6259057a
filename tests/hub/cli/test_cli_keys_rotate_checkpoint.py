"""`onceonly keys rotate-checkpoint` (decision 0091): the audit log's checkpoint key is
replaced, the old one kept; a hub started afterwards adds the new key's signature to
the latest checkpoint, so an auditor who pins the new key verifies it at once (from a
state file made before the rotation), and one who still pins the old key too; later
checkpoints are signed by the new key only. On SQLite and PostgreSQL."""

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from onceonly.hub.audit.notes import Checkpoint, NoteError, Signer, Verifier, open_checkpoint
from onceonly.hub.cli import main

from tests.hub.audit.test_audit_verify import (
    CHECKPOINT_INTERVAL,
    ORIGIN,
    SIZE,
    Auditor,
    _entry,
    append,
    checkpoint_size,
    verifier_key,
    wait_for_checkpoint,
)
from tests.hub.console.console_world import sign_in
from tests.hub_testing import TEST_PASSWORD, RunningHub, running_hub, signed_in


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "hub"


def _hub(database_url: str, data_dir: Path) -> "Iterator[RunningHub]":
    return running_hub(  # type: ignore[no-any-return]
        database_url=database_url,
        data_dir=data_dir,
        checkpoint_interval=CHECKPOINT_INTERVAL,
        audit_origin=ORIGIN,
    )


@pytest.fixture
def hub_env(database_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub's settings, as the operator's shell has them for `onceonly keys ...`."""
    monkeypatch.setenv("ONCEONLY_DATA_DIR", str(data_dir))
    monkeypatch.setenv("ONCEONLY_DATABASE_URL", database_url)
    monkeypatch.setenv("ONCEONLY_AUDIT_ORIGIN", ORIGIN)


def _rotate(capsys: pytest.CaptureFixture[str]) -> tuple[str, str, Path, str]:
    """Run the command: the new verifier key, the old one, the kept key file, and what
    auditors are told to pass (``OLD@SIZE``)."""
    capsys.readouterr()
    assert main(["keys", "rotate-checkpoint"]) == 0
    out = capsys.readouterr().out
    new = out.split("new verifier key for auditors: ", 1)[1].split("\n", 1)[0]
    retired = out.split("the key it replaces is retired: its verifier key (", 1)[1]
    old, _, kept = retired.partition(") is kept in ")
    assert "restart every replica" in out
    assert "the new verifier key AND the rotation boundary" in out
    boundary = out.split("auditors name the old key as --previous-key ", 1)[1].split("\n")[0]
    return new, old, Path(kept.split(",", 1)[0]), boundary


def _opens(note: str, key: str) -> bool:
    try:
        open_checkpoint(note, Verifier.parse(key))
    except NoteError:
        return False
    return True


@pytest.mark.usefixtures("hub_env")
def test_a_rotated_checkpoint_key_is_pinned_by_auditors_without_a_fork(
    database_url: str, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _hub(database_url, data_dir) as hub:
        old_key = verifier_key(hub)
        append(database_url, [_entry(n) for n in range(SIZE)])
        wait_for_checkpoint(hub, SIZE)
        before = Auditor(capsys, tmp_path / "auditor.json", old_key)
        status, output = before.verify(hub)
        assert status == 0, output
    state_before_rotation = before.state.read_text()
    keys = data_dir / "keys"
    old_file = (keys / "checkpoint.jwk").read_bytes()

    new_key, printed_old, kept, boundary = _rotate(capsys)

    assert printed_old == old_key
    assert boundary == f"{old_key}@{SIZE}"  # the latest checkpoint's size, to publish
    assert new_key != old_key
    assert Verifier.parse(new_key).name == ORIGIN
    assert kept.parent == keys / "checkpoint-retired"
    assert kept.read_text() == f"{old_key}\n"  # its verifier key, public...
    assert list(kept.parent.iterdir()) == [kept]  # ...and its private key nowhere
    assert json.loads(old_file)["d"] not in "".join(p.read_text() for p in keys.rglob("*.*"))
    assert (keys / "checkpoint.jwk").read_bytes() != old_file
    assert stat.S_IMODE((keys / "checkpoint.jwk").stat().st_mode) == 0o600
    # keys init (and so the start) does not refuse: the checkpoint key is there
    assert main(["keys", "init"]) == 0
    assert f"verifier key for auditors: {new_key}" in capsys.readouterr().out
    assert main(["config", "check"]) == 0, capsys.readouterr().err

    with _hub(database_url, data_dir) as hub:
        assert verifier_key(hub) == new_key
        note = httpx.get(f"{hub.url}/v1/audit/checkpoint").text
        assert checkpoint_size(hub) == SIZE  # the same checkpoint, the log has not grown
        older_only = [  # what the old key alone signed: every checkpoint before SIZE
            c
            for c in httpx.get(f"{hub.url}/v1/audit/checkpoints").json()["checkpoints"]
            if not _opens(c["note"], new_key)
        ]
        assert older_only
        assert _opens(note, new_key)
        assert _opens(note, old_key)  # cosigned, not re-signed
        history = httpx.get(f"{hub.url}/v1/audit/checkpoints", params={"since_size": SIZE})
        assert history.json()["checkpoints"][0]["note"] == note

        # the auditor who pins the new key: their state continues, no SHRINK or FORK
        pinned_new = Auditor(capsys, before.state, new_key)
        status, output = pinned_new.verify(hub, "--full")
        assert status == 2, output  # the state's checkpoint is the old key's alone...
        assert "holds no checkpoint signed by the pinned key" in output
        status, output = pinned_new.verify(hub, "--full", "--previous-key", old_key)
        assert status == 0, output  # ...which the old key, named, vouches for
        assert f"consistent with the checkpoint in {before.state} (signed by the previous key" in (
            output
        )
        # an auditor who has not yet heard of the rotation still verifies the cosigned one
        late = Auditor(capsys, tmp_path / "late.json", old_key)
        late.state.write_text(state_before_rotation)
        status, output = late.verify(hub)
        assert status == 0, output

        append(database_url, [_entry(n) for n in range(SIZE, SIZE + 5)])
        wait_for_checkpoint(hub, SIZE + 5)
        latest = httpx.get(f"{hub.url}/v1/audit/checkpoint").text
        assert _opens(latest, new_key)
        assert not _opens(latest, old_key)  # signed by the new key only
        assert latest.count("\n\u2014 ") == 1
        status, output = pinned_new.verify(hub, "--full")  # its state: the cosigned note
        assert status == 0, output
        status, output = late.verify(hub)
        assert status == 1
        assert "not validly signed by the pinned key" in output

        # the auditors' console: the checkpoints the old key alone signed verify with it,
        # named as such (they read "Does not verify", as if altered: review 159, F3)
        signed_in(hub, "aurelia", {"role": "auditor"})
        with httpx.Client(base_url=hub.url) as browser:
            assert sign_in(browser, "aurelia", TEST_PASSWORD).status_code == 303
            page = browser.get("/checkpoints").text
        assert "Does not verify" not in page
        assert page.count("Verified with the previous key") == len(older_only)
        assert old_key in page


def test_a_production_rotation_needs_the_key_it_replaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ONCEONLY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ONCEONLY_MODE", "production")
    monkeypatch.setenv("ONCEONLY_ISSUER", "https://hub.example.gov")
    monkeypatch.setenv("ONCEONLY_DATABASE_URL", "postgresql://hub@127.0.0.1:9/unused")
    monkeypatch.setenv("ONCEONLY_AUDIT_ORIGIN", ORIGIN)
    assert main(["keys", "rotate-checkpoint"]) == 1
    err = capsys.readouterr().err
    assert "not rotated:" in err
    assert "checkpoint.jwk is missing" in err
    assert not (tmp_path / "keys" / "checkpoint-retired").exists()


@pytest.fixture
def rotated(
    database_url: str, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[str, str, Path, bytes]:
    """A log of SIZE entries checkpointed, verified by an auditor (state file
    ``auditor.json``), then the checkpoint key rotated: the new and old verifier keys,
    the retired key's file, and the old private key file (what a thief kept)."""
    with _hub(database_url, data_dir) as hub:
        old_key = verifier_key(hub)
        append(database_url, [_entry(n) for n in range(SIZE)])
        wait_for_checkpoint(hub, SIZE)
        status, output = Auditor(capsys, tmp_path / "auditor.json", old_key).verify(hub)
        assert status == 0, output
    old_file = (data_dir / "keys" / "checkpoint.jwk").read_bytes()
    new_key, _, kept, boundary = _rotate(capsys)
    assert boundary == f"{old_key}@{SIZE}"
    return new_key, old_key, kept, old_file


@pytest.mark.usefixtures("hub_env")
def test_a_leaked_retired_key_is_no_evidence_past_the_rotation(
    database_url: str,
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    rotated: tuple[str, str, Path, bytes],
) -> None:
    """--previous-key vouches for a --compare checkpoint only up to the last one the hub
    signed with that key: past it, one signed by a leaked old key is not a FORK or a
    SHRINK of the hub's, and the messages say which key signed each side."""
    new_key, old_key, _, old_file = rotated
    at = f"{old_key}@{SIZE}"  # what keys rotate-checkpoint printed (the fixture checks)
    thief = Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(_private(old_file)))
    with _hub(database_url, data_dir) as hub:
        auditor = Auditor(capsys, tmp_path / "auditor.json", new_key)
        larger = tmp_path / "larger.note"
        larger.write_text(thief.sign(Checkpoint(ORIGIN, SIZE + 1000, os.urandom(32)).text()))
        status, output = auditor.verify(hub, "--previous-key", at, "--compare", str(larger))
        assert status == 2, output
        assert "is signed only by a retired key past its rotation" in output
        assert "not evidence against the hub" in output
        # past the boundary, even when the hub's history were to show the old key there
        status, output = auditor.verify(
            hub, "--previous-key", f"{old_key}@{SIZE + 999}", "--compare", str(larger)
        )
        assert status == 2, output

        same = tmp_path / "same.note"
        same.write_text(thief.sign(Checkpoint(ORIGIN, SIZE, os.urandom(32)).text()))
        status, output = auditor.verify(hub, "--previous-key", old_key, "--compare", str(same))
        assert status == 2, output  # no boundary given: not counted, the size asked for
        assert f"--previous-key {old_key}@SIZE" in output
        status, output = auditor.verify(hub, "--previous-key", at, "--compare", str(same))
        assert status == 1, output  # up to the rotation, the old key was the hub's word
        assert "FORK" in output
        assert "same key" not in output
        assert f"the hub's with the pinned key and the checkpoint in {same} with the" in output
        assert f"previous key {old_key}" in output


def _private(jwk: bytes) -> bytes:
    import base64

    d = json.loads(jwk)["d"]
    return base64.urlsafe_b64decode(d + "=" * (-len(d) % 4))


@pytest.mark.usefixtures("hub_env")
def test_a_retired_key_put_back_as_the_current_one_is_refused(
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    rotated: tuple[str, str, Path, bytes],
) -> None:
    """An old backup's checkpoint.jwk restored after a rotation would cosign the new
    key's checkpoints with the old (perhaps leaked) key: config check (and so serve)
    refuses it; a note beside the verifier keys is no key file to check."""
    _, _, kept, old_file = rotated
    (kept.parent / "README").write_text("retired checkpoint keys: public\n")
    (kept.parent / "README").chmod(0o644)
    capsys.readouterr()
    assert main(["config", "check"]) == 0, capsys.readouterr().err
    (data_dir / "keys" / "checkpoint.jwk").write_bytes(old_file)
    assert main(["config", "check"]) == 1
    err = capsys.readouterr().err
    assert f"is the checkpoint key that was retired in {kept}" in err
