"""Review 167: the rotation's boundary is the auditor's, never the audited hub's.

A ``--compare`` checkpoint signed only by a retired checkpoint key counts up to the
size published with the new key (``--previous-key OLD@SIZE``, which ``keys
rotate-checkpoint`` prints), whatever the hub's history shows later: a hub that rewrote
its log after the rotation is a FORK. After a log rename the "previous key" is the
hub's own key: a disagreeing checkpoint under the old name is the hub's own FORK. A
hostile hub's malformed answers are exit 1 or 2, never a traceback. SQLite and
PostgreSQL, real hubs and the real command."""

import base64
import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from onceonly.hub.audit import merkle
from onceonly.hub.audit.notes import Checkpoint, Signer
from onceonly.hub.cli import main

from tests.hub.audit.test_audit_verify import (
    CHECKPOINT_INTERVAL,
    ORIGIN,
    SIZE,
    Auditor,
    _entry,
    append,
    rewrite,
    stored_entries,
    verifier_key,
    wait_for_checkpoint,
)
from tests.hub.cli.test_cli_keys_rotate_checkpoint import (  # noqa: F401 (fixtures)
    _hub,
    data_dir,
    hub_env,
    rotated,
)
from tests.hub_testing import running_hub

NEW_ORIGIN = "renamed.test/audit"


@pytest.mark.usefixtures("hub_env")
def test_a_history_rewritten_after_the_rotation_is_a_fork_with_the_published_boundary(
    database_url: str,
    data_dir: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    rotated: tuple[str, str, Path, bytes],  # noqa: F811
) -> None:
    """Auditor A verified SIZE entries under the old key. After the rotation the
    operator rewrites entry 7, deleting every checkpoint: the hub's history then shows
    no old-key checkpoint. Auditor B, who pins the new key and names the old one with
    the published boundary, compares A's checkpoint: FORK (it was exit 2, "not evidence",
    the hub's history deciding)."""
    new_key, old_key, _, _ = rotated
    evidence = tmp_path / "auditor.json"  # A's state: the old key's checkpoint of SIZE
    with _hub(database_url, data_dir) as hub:
        verified = stored_entries(database_url)
        edited = [*verified[:7], {**verified[7], "purpose": "curiosity"}, *verified[8:]]
        rewrite(database_url, [*edited, _entry(100), _entry(101)])
        wait_for_checkpoint(hub, SIZE + 2)

        b = Auditor(capsys, tmp_path / "b.json", new_key)
        at = f"{old_key}@{SIZE}"
        status, output = b.verify(hub, "--previous-key", at, "--compare", str(evidence))
        assert status == 1, output
        assert "FORK" in output
        assert f"{evidence} ({SIZE} entries, signed with the previous key {old_key})" in output
        assert not b.state.exists()  # nothing verified is kept


def test_after_a_rename_a_disagreeing_checkpoint_under_the_old_name_is_the_hubs_own_fork(
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`keys init --change-audit-origin` keeps the private key: the old name's verifier
    key is the hub's own. A checkpoint under the old name, past the rename, that
    disagrees with the hub's (a split view shown to other auditors) is the hub's
    equivocation: FORK naming the hub's own key, never "retired", with or without a
    boundary (it was exit 2, "signed only by a retired key")."""
    data_dir = tmp_path / "hub"  # noqa: F811 (not the fixture: a hub of its own)
    monkeypatch.setenv("ONCEONLY_DATA_DIR", str(data_dir))
    monkeypatch.setenv("ONCEONLY_DATABASE_URL", database_url)
    monkeypatch.setenv("ONCEONLY_AUDIT_ORIGIN", ORIGIN)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))

    def hub(origin: str):  # type: ignore[no-untyped-def]
        return running_hub(
            database_url=database_url,
            data_dir=data_dir,
            checkpoint_interval=CHECKPOINT_INTERVAL,
            audit_origin=origin,
        )

    with hub(ORIGIN) as running:
        old_key = verifier_key(running)
        append(database_url, [_entry(n) for n in range(SIZE)])
        wait_for_checkpoint(running, SIZE)
    monkeypatch.setenv("ONCEONLY_AUDIT_ORIGIN", NEW_ORIGIN)
    capsys.readouterr()
    assert main(["keys", "init", "--change-audit-origin"]) == 0
    new_key = capsys.readouterr().out.split("verifier key for auditors: ", 1)[1].split("\n")[0]
    d = json.loads((data_dir / "keys" / "checkpoint.jwk").read_text())["d"]
    private = Ed25519PrivateKey.from_private_bytes(
        base64.urlsafe_b64decode(d + "=" * (-len(d) % 4))
    )
    hubs_key_old_name = Signer(ORIGIN, private)  # only the hub holds it
    assert str(hubs_key_old_name.verifier) == old_key
    with hub(NEW_ORIGIN) as running:
        append(database_url, [_entry(n) for n in range(SIZE, SIZE + 5)])
        wait_for_checkpoint(running, SIZE + 5)
        split_view = tmp_path / "split.note"
        split_view.write_text(
            hubs_key_old_name.sign(Checkpoint(ORIGIN, SIZE + 5, os.urandom(32)).text())
        )
        auditor = Auditor(capsys, tmp_path / "y.json", new_key)
        for previous in (old_key, f"{old_key}@{SIZE}"):
            status, output = auditor.verify(
                running, "--previous-key", previous, "--compare", str(split_view)
            )
            assert status == 1, output
            assert "FORK" in output
            assert f"with the hub's own key under the log's former name ({old_key}" in output
            assert "retired" not in output


@pytest.mark.usefixtures("hub_env")
def test_a_leaked_key_past_the_published_boundary_stays_no_evidence(
    database_url: str,
    data_dir: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    rotated: tuple[str, str, Path, bytes],  # noqa: F811
) -> None:
    """A thief with the old private key signs a larger, disagreeing checkpoint: past the
    boundary it is exit 2, "past its rotation", also for a SHRINK it would show."""
    new_key, old_key, _, old_file = rotated
    d = json.loads(old_file)["d"]
    thief = Signer(
        ORIGIN,
        Ed25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(d + "=" * (-len(d) % 4))),
    )
    with _hub(database_url, data_dir) as hub:
        forged = tmp_path / "forged.note"
        forged.write_text(thief.sign(Checkpoint(ORIGIN, SIZE + 1, os.urandom(32)).text()))
        auditor = Auditor(capsys, tmp_path / "auditor.json", new_key)
        at = f"{old_key}@{SIZE}"
        status, output = auditor.verify(hub, "--previous-key", at, "--compare", str(forged))
        assert status == 2, output
        assert "signed only by a retired key past its rotation" in output
        assert f"up to {SIZE} entries" in output
        assert "SHRINK" not in output


@pytest.mark.parametrize("previous", ["no", "bad-size"])
def test_a_malformed_boundary_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], previous: str
) -> None:
    key = str(Signer(ORIGIN, Ed25519PrivateKey.generate()).verifier)
    old = str(Signer(ORIGIN, Ed25519PrivateKey.generate()).verifier)
    text = {"no": f"{old}@", "bad-size": f"{old}@12x"}[previous]
    argv = ["audit", "verify", "--hub", "http://127.0.0.1:9", "--key", key]
    assert main([*argv, "--previous-key", text, "--state", str(tmp_path / "s.json")]) == 2
    assert "is not a tree size" in capsys.readouterr().err


# --- a hostile hub's malformed answers ---------------------------------------------------


class _FakeHub(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        body = self.routes.get(path, b"")
        self.send_response(200 if path in self.routes else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_hub() -> Iterator[tuple[str, type[_FakeHub]]]:
    class Handler(_FakeHub):
        routes: ClassVar[dict[str, bytes]] = {}

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", Handler
    finally:
        server.shutdown()
        server.server_close()


HISTORIES = [
    b'{"checkpoints": [1]}',
    b'{"checkpoints": "abc"}',
    b'{"checkpoints": [{"note": 5}], "next_since_size": "x"}',
    b'{"checkpoints": {"a": 1}, "next_since_size": 2.5}',
    b"[1]",
]


@pytest.mark.parametrize("history", HISTORIES)
def test_a_malformed_history_page_is_exit_2(
    fake_hub: tuple[str, type[_FakeHub]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    history: bytes,
) -> None:
    """Whatever the hub's history says, a previous key's checkpoint without a published
    boundary is exit 2 (it was a traceback reading the history)."""
    url, handler = fake_hub
    old = Signer(ORIGIN, Ed25519PrivateKey.generate())
    new = Signer(ORIGIN, Ed25519PrivateKey.generate())
    empty = Checkpoint(ORIGIN, 0, merkle.EMPTY_ROOT).text()
    handler.routes = {
        "/v1/audit/checkpoint": new.sign(empty).encode(),
        "/v1/audit/checkpoints": history,
    }
    earlier = tmp_path / "earlier.note"
    earlier.write_text(old.sign(empty))
    monkeypatch.delenv("ONCEONLY_TOKEN", raising=False)
    argv = [
        *("audit", "verify", "--hub", url, "--key", str(new.verifier)),
        *("--previous-key", str(old.verifier), "--compare", str(earlier)),
        *("--state", str(tmp_path / "s.json")),
    ]
    assert main(argv) == 2
    assert f"--previous-key {old.verifier}@SIZE" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("leaves", "status"),
    [
        (b'{"entries": "abc"}', 2),
        (b'{"entries": {"index": 0}}', 2),
        (b'{"entries": 7}', 2),
        (b'{"entries": [1]}', 1),
        (b'{"entries": ["abc"]}', 1),
    ],
)
def test_malformed_leaves_are_no_traceback(
    fake_hub: tuple[str, type[_FakeHub]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    leaves: bytes,
    status: int,
) -> None:
    """``--full`` on a hub whose leaves page is not a list of entries: exit 2 (an odd
    answer), an entry that is not an object: exit 1 (an entry it signed is malformed)."""
    url, handler = fake_hub
    key = Signer(ORIGIN, Ed25519PrivateKey.generate())
    handler.routes = {
        "/v1/audit/checkpoint": key.sign(Checkpoint(ORIGIN, 1, os.urandom(32)).text()).encode(),
        "/v1/audit/leaves": leaves,
    }
    monkeypatch.delenv("ONCEONLY_TOKEN", raising=False)
    argv = [
        *("audit", "verify", "--hub", url, "--key", str(key.verifier), "--full"),
        *("--state", str(tmp_path / "s.json")),
    ]
    assert main(argv) == status, capsys.readouterr().err
