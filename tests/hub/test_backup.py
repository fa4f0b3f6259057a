"""Backup and restore, drilled (issue 15): a backup taken while the hub writes restores
into an empty database, the restored hub serves a log that verifies, and an auditor
who saw a later checkpoint rightly reports the entries the backup could not hold."""

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from onceonly.hub import backup
from onceonly.hub.cli import audit_verify, main
from onceonly.hub.db import make_sync_engine

from tests.hub_testing import CATALOGUE, RunningHub, empty_postgres, running_hub, wait_until
from tests.pg_cluster import new_database


@pytest.fixture
def empty_database(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of the same kind as ``database_url``, with no tables at all: where a
    restore goes."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored' / 'hub.db'}"
        return
    with new_database("onceonly_restore") as url:
        yield url


def _checkpointed(hub: RunningHub) -> int:
    """Wait until the latest checkpoint covers every entry; its size."""
    sizes: list[int] = []

    def covered() -> bool:
        engine = make_sync_engine(hub.settings.resolved_database_url)
        with engine.connect() as conn:
            total = conn.execute(sa.text("SELECT count(*) FROM audit_entries")).scalar_one()
        engine.dispose()
        signed = httpx.get(f"{hub.url}/v1/audit/checkpoint").text.splitlines()[1]
        sizes.append(int(signed))
        return int(signed) == total and total > 0

    wait_until(covered, what="a checkpoint of every entry")
    return sizes[-1]


def _verify(hub: RunningHub, state: Path, *, full: bool = False) -> tuple[int, list[str]]:
    said: list[str] = []
    key = httpx.get(f"{hub.url}/v1/audit/verifier-key").text.strip()
    code = audit_verify.run(hub=hub.url, key=key, state_path=state, full=full, say=said.append)
    return code, said


def test_a_backup_taken_while_the_hub_writes_restores_and_verifies(
    database_url: str,
    empty_database: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    auditor = tmp_path / "auditor.json"
    data_dir = tmp_path / "hub"
    with running_hub(database_url=database_url, data_dir=data_dir, checkpoint_interval=0.1) as hub:
        with hub.admin() as admin:
            admin.import_catalogue(CATALOGUE)
        at_backup = _checkpointed(hub)
        assert _verify(hub, auditor)[0] == 0

        manifest = backup.backup(database_url, hub.settings.keys_dir, tmp_path / "backup")
        assert manifest.audit_entries_at_least >= at_backup

        # The hub goes on: entries acknowledged after the backup, and an auditor sees them.
        with hub.admin() as admin:
            for item in ("person.identity", "person.residential-address"):
                admin.create_grant(
                    consumer="tax", item=item, purpose="benefit-eligibility", legal_basis="t"
                )
        later = _checkpointed(hub)
        assert later > at_backup
        assert _verify(hub, auditor)[0] == 0

    saved = tmp_path / "backup"
    assert {p.name for p in saved.iterdir()} == {
        "manifest.json",
        "keys",
        backup.SQLITE_FILE if database_url.startswith("sqlite") else backup.PGDUMP_FILE,
    }
    assert all(p.stat().st_mode & 0o077 == 0 for p in saved.rglob("*"))  # secrets inside

    # Restore on another machine: an empty database, an empty key directory.
    restored_dir = tmp_path / "restored-hub"
    backup.restore(saved, empty_database, restored_dir / "keys")
    with pytest.raises(backup.BackupError, match=r"not empty|exists"):
        backup.restore(saved, empty_database, restored_dir / "keys")  # never over data

    with running_hub(
        database_url=empty_database, data_dir=restored_dir, checkpoint_interval=0.1
    ) as restored:
        assert httpx.get(f"{restored.url}/readyz").status_code == 200
        # The restored log is sound in itself, to a new auditor, in full.
        code, said = _verify(restored, tmp_path / "new-auditor.json", full=True)
        assert code == 0, said
        assert f"{at_backup} entries" in said[0]
        # The auditor who saw the later checkpoint is told the log lost entries.
        capsys.readouterr()
        code, _ = _verify(restored, auditor)
        assert code == audit_verify.EXIT_FAILED
        assert f"SHRINK: the log now has {at_backup} entries" in capsys.readouterr().err


def test_a_restore_refuses_keys_that_are_not_the_backups(tmp_path: Path) -> None:
    data_dir = tmp_path / "hub"
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    with running_hub(database_url=url, data_dir=data_dir):
        pass
    saved = backup.backup(url, data_dir / "keys", tmp_path / "backup")
    assert saved.database == "sqlite"
    with pytest.raises(backup.BackupError, match="exists; a backup goes into a new directory"):
        backup.backup(url, data_dir / "keys", tmp_path / "backup")

    other_keys = tmp_path / "other" / "keys"
    other_keys.mkdir(parents=True)
    (other_keys / "pseudonym.key").write_bytes(b"not the backup's secret")
    target = tmp_path / "restored.db"
    with pytest.raises(backup.BackupError, match="differs from the backup's"):
        backup.restore(tmp_path / "backup", f"sqlite:///{target}", other_keys)
    assert not target.exists()  # refused before the database was touched

    with pytest.raises(backup.BackupError, match="not an onceonly backup"):
        backup.restore(tmp_path, f"sqlite:///{target}", tmp_path / "k")


def _backed_up(tmp_path: Path) -> tuple[str, Path]:
    """A hub's SQLite database and keys (keys init made them), and a backup of them."""
    data_dir = tmp_path / "hub"
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    with running_hub(database_url=url, data_dir=data_dir):
        pass
    backup.backup(url, data_dir / "keys", tmp_path / "backup")
    return url, data_dir / "keys"


def test_a_backup_needs_every_key_and_never_reuses_a_directory(tmp_path: Path) -> None:
    url, keys = _backed_up(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(backup.BackupError, match="exists; a backup goes into a new directory"):
        backup.backup(url, keys, tmp_path / "empty")
    assert list((tmp_path / "empty").iterdir()) == []
    with pytest.raises(backup.BackupError, match="no database file"):
        backup.backup(f"sqlite:///{tmp_path / 'none.db'}", keys, tmp_path / "b2")
    assert not (tmp_path / "none.db").exists()  # looking did not create it
    assert not (tmp_path / "b2").exists()
    (keys / "checkpoint.jwk").unlink()
    with pytest.raises(backup.BackupError, match=r"lacks checkpoint\.jwk"):
        backup.backup(url, keys, tmp_path / "partial")
    assert not (tmp_path / "partial").exists()


def test_a_restore_refuses_a_damaged_or_partial_backup_before_writing(tmp_path: Path) -> None:
    _, _ = _backed_up(tmp_path)
    saved = tmp_path / "backup"
    target = tmp_path / "restored.db"
    manifest = json.loads((saved / "manifest.json").read_text())

    (saved / "keys" / "derivation.key").unlink()
    with pytest.raises(backup.BackupError, match=r"lacks the key files derivation\.key"):
        backup.restore(saved, f"sqlite:///{target}", tmp_path / "k1")
    assert not target.exists()
    assert not (tmp_path / "k1").exists()

    (saved / "manifest.json").write_text(json.dumps({**manifest, "audit_entries_at_least": "x"}))
    with pytest.raises(backup.BackupError, match="damaged: audit_entries_at_least"):
        backup.restore(saved, f"sqlite:///{target}", tmp_path / "k2")
    with pytest.raises(backup.BackupError, match="not a directory"):
        backup.restore(saved / "manifest.json", f"sqlite:///{target}", tmp_path / "k3")
    assert not target.exists()


@pytest.mark.postgres
def test_a_failed_postgres_restore_leaves_the_database_empty(
    tmp_path: Path, postgres_url: str
) -> None:
    empty_postgres(postgres_url)  # an earlier test of the session may have left rows
    with running_hub(database_url=postgres_url, data_dir=tmp_path / "hub") as hub:
        with hub.admin() as admin:
            admin.import_catalogue(CATALOGUE)
    backup.backup(postgres_url, tmp_path / "hub" / "keys", tmp_path / "backup")
    with new_database("onceonly_restore") as target:
        _restore_over_a_type_in_the_way(tmp_path / "backup", target, tmp_path / "other" / "keys")


def test_a_postgres_backup_with_an_operators_extension_restores_as_the_hubs_own_role(
    tmp_path: Path, postgres_url: str
) -> None:
    """amcheck, installed by a superuser for ``onceonly audit check-nodes``
    (docs/operations.md), is in the dump: pg_dump takes every extension. The hub's role,
    not a superuser, restores into an empty database it owns, as the docs have it; its
    restore leaves the extension out instead of failing on it (before: pg_restore
    failed, "permission denied to create extension")."""
    from tests.hub_testing import postgres_admin

    empty_postgres(postgres_url)  # an earlier test of the session may have left rows
    with running_hub(database_url=postgres_url, data_dir=tmp_path / "hub") as hub:
        with hub.admin() as admin:
            admin.import_catalogue(CATALOGUE)
    engine = make_sync_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE EXTENSION amcheck"))
    try:
        backup.backup(postgres_url, tmp_path / "hub" / "keys", tmp_path / "backup")
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP EXTENSION amcheck"))
        engine.dispose()
    role = f"hub_{uuid.uuid4().hex[:8]}"
    with postgres_admin(postgres_url) as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
    try:
        with new_database("onceonly_restore") as target:
            superuser = make_sync_engine(target)
            with superuser.begin() as conn:  # the docs' createdb --owner, as it comes
                conn.execute(sa.text(f"ALTER DATABASE {target.rsplit('/', 1)[1]} OWNER TO {role}"))
                conn.execute(sa.text(f"ALTER SCHEMA public OWNER TO {role}"))
            superuser.dispose()
            as_role = target.replace("postgresql://postgres@", f"postgresql://{role}@", 1)
            assert as_role != target
            backup.restore(tmp_path / "backup", as_role, tmp_path / "restored" / "keys")
            restored = make_sync_engine(as_role)
            with restored.connect() as conn:
                assert conn.execute(sa.text("SELECT count(*) FROM audit_entries")).scalar()
                extensions = set(
                    conn.execute(sa.text("SELECT extname FROM pg_extension")).scalars()
                )
                assert "amcheck" not in extensions
            restored.dispose()
    finally:
        with postgres_admin(postgres_url) as conn:
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
    # A superuser restores the extension too, and so what may depend on it (helper-138:
    # an operator's index of an extension's kind failed the restore once it was left out)
    with new_database("onceonly_restore") as target:
        backup.restore(tmp_path / "backup", target, tmp_path / "restored-again" / "keys")
        restored = make_sync_engine(target)
        with restored.connect() as conn:
            extensions = set(conn.execute(sa.text("SELECT extname FROM pg_extension")).scalars())
        restored.dispose()
        assert "amcheck" in extensions


def _restore_over_a_type_in_the_way(saved: Path, target: str, keys: Path) -> None:
    blocker = sa.create_engine(target.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with blocker.begin() as conn:  # no table, but in the way of one the dump makes
            conn.execute(sa.text("CREATE TYPE audit_entries AS (x int)"))
        with pytest.raises(backup.BackupError, match=r"pg_restore failed .*error:"):
            backup.restore(saved, target, keys)
        with blocker.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
        assert tables == []  # one transaction: nothing half restored
        with blocker.begin() as conn:
            conn.execute(sa.text("DROP TYPE audit_entries"))
        # Run again: the keys it put in place first are the backup's, so it goes on.
        backup.restore(saved, target, keys)
        with blocker.connect() as conn:
            assert "audit_entries" in sa.inspect(conn).get_table_names()
    finally:
        blocker.dispose()


def test_keys_init_refuses_new_keys_for_data_made_with_the_old_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A restore that failed halfway, or a lost key file: keys init must not put a new
    pseudonym secret or checkpoint key beside data made with the old ones."""
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    with running_hub(database_url=url, data_dir=tmp_path / "hub", checkpoint_interval=0.1) as hub:
        with hub.admin() as admin:
            admin.import_catalogue(CATALOGUE)
        _checkpointed(hub)
    monkeypatch.setenv("ONCEONLY_DATA_DIR", str(tmp_path / "hub"))
    monkeypatch.setenv("ONCEONLY_DATABASE_URL", url)
    keys = tmp_path / "hub" / "keys"
    for name in ("checkpoint.jwk", "pseudonym.key"):
        kept = (keys / name).read_bytes()
        (keys / name).unlink()
        assert main(["keys", "init"]) == 1
        err = capsys.readouterr().err
        assert f"{name} is missing" in err
        assert "restore it from the backup" in err
        assert not (keys / name).exists()
        (keys / name).write_bytes(kept)
    both = {name: (keys / name).read_bytes() for name in ("pseudonym.key", "checkpoint.jwk")}
    for name in both:
        (keys / name).unlink()
    assert main(["keys", "init"]) == 1
    err = capsys.readouterr().err
    assert "pseudonym.key and checkpoint.jwk are missing" in err
    assert "restore them from the backup" in err
    for name, kept in both.items():
        (keys / name).write_bytes(kept)
    # derivation.key is made on an existing database (the upgrade of decision 0017)
    (keys / "derivation.key").unlink()
    assert main(["keys", "init"]) == 0
    assert (keys / "derivation.key").exists()


def test_a_rotated_checkpoint_key_is_backed_up_and_restored_with_the_other_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The key a rotation replaced (keys/checkpoint-retired/, decision 0091) is a key file
    like the others: a backup holds it and a restore puts it back."""
    url, keys = _backed_up(tmp_path)
    monkeypatch.setenv("ONCEONLY_DATA_DIR", str(tmp_path / "hub"))
    monkeypatch.setenv("ONCEONLY_DATABASE_URL", url)
    assert main(["keys", "rotate-checkpoint"]) == 0
    (kept,) = (keys / "checkpoint-retired").iterdir()
    assert f"kept in {kept}" in capsys.readouterr().out
    backup.backup(url, keys, tmp_path / "rotated")
    restored = tmp_path / "restored"
    backup.restore(tmp_path / "rotated", f"sqlite:///{restored / 'hub.db'}", restored / "keys")
    for name in ("checkpoint.jwk", f"checkpoint-retired/{kept.name}"):
        assert (restored / "keys" / name).read_bytes() == (keys / name).read_bytes(), name
