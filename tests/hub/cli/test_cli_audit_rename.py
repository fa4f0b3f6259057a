"""An auditor who follows the docs after `keys init --change-audit-origin` (decision
0089, follow-up): `audit verify --key NEW --previous-key OLD`, without --state, reads
the state file of the old name too, so a history rewritten at the rename is a FORK. On
SQLite and PostgreSQL, the real command."""

from pathlib import Path

import pytest

from onceonly.hub.cli import main

from tests.hub.audit.test_audit_verify import (
    CHECKPOINT_INTERVAL,
    ORIGIN,
    SIZE,
    _entry,
    append,
    execute,
    stored_entries,
    verifier_key,
    wait_for_checkpoint,
)
from tests.hub_testing import running_hub

NEW_ORIGIN = "renamed.test/audit"


def test_a_history_rewritten_at_a_rename_is_a_fork_for_the_auditor_who_follows_the_docs(
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data_dir = tmp_path / "hub"
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
        assert main(["audit", "verify", "--hub", running.url, "--key", old_key]) == 0

    monkeypatch.setenv("ONCEONLY_AUDIT_ORIGIN", NEW_ORIGIN)
    capsys.readouterr()
    assert main(["keys", "init", "--change-audit-origin"]) == 0
    said = capsys.readouterr().out
    new_key = said.split("verifier key for auditors: ", 1)[1].split("\n", 1)[0]
    assert f"--key {new_key} --previous-key {NEW_ORIGIN}" not in said
    assert f"--key {new_key} --previous-key {ORIGIN}+" in said  # what to run, once
    assert "which the new key does not verify (exit 1)" in said

    # the operator rewrites entry 5 at the rename
    entries = stored_entries(database_url)
    edited = [*entries[:5], {**entries[5], "purpose": "curiosity"}, *entries[6:], _entry(99)]
    execute(
        database_url,
        "DELETE FROM audit_checkpoints",
        "DELETE FROM audit_nodes",
        "DELETE FROM audit_entries",
    )
    append(database_url, edited)
    with hub(NEW_ORIGIN) as running:
        wait_for_checkpoint(running, SIZE + 1)
        assert verifier_key(running) == new_key
        capsys.readouterr()
        verify = ["audit", "verify", "--hub", running.url, "--key", new_key]
        assert main(verify) == 0  # without the old key: nothing links the two names...
        assert "if the operators renamed the log" in capsys.readouterr().err  # ...but a warning
        (tmp_path / "state" / "onceonly" / "audit-renamed.test-audit.json").unlink()
        assert main([*verify, "--previous-key", old_key]) == 1
        err = capsys.readouterr().err
        assert "continuing from the state of the name the previous key was given" in err
        assert "FORK" in err
        assert f"signed with the hub's own key under the log's former name ({old_key}" in err
