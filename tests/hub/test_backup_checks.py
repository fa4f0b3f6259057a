"""What ``onceonly restore`` and ``onceonly backup`` refuse before they write (an
operator's review of the CLI contract): a backup whose database is empty, damaged or
holds fewer audit entries than its manifest says; a backup directory inside the data
directory; a restore that would rename the audit log or lacks its database file. Each
is one line on standard error, exit 1, and nothing in place where the hub reads."""

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from onceonly.hub import backup
from onceonly.hub.cli import main
from onceonly.hub.config import AUDIT_ORIGIN_FILE
from onceonly.hub.db import make_sync_engine

from tests.hub_testing import CATALOGUE, empty_postgres, running_hub
from tests.pg_cluster import new_database


@pytest.fixture
def sqlite_backup(tmp_path: Path) -> Path:
    """A backup of a SQLite hub whose log holds entries (the catalogue's import)."""
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    with running_hub(database_url=url, data_dir=tmp_path / "hub") as hub:
        with hub.admin() as admin:
            admin.import_catalogue(CATALOGUE)
    made = backup.backup(url, tmp_path / "hub" / "keys", tmp_path / "backup")
    assert made.audit_entries_at_least > 0
    return tmp_path / "backup"


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The settings of another machine's hub, with nothing in its data directory yet:
    where the CLI restores (``ONCEONLY_DATA_DIR`` only, the database its default)."""
    data_dir = tmp_path / "new" / "var"
    monkeypatch.setenv("ONCEONLY_DATA_DIR", str(data_dir))
    monkeypatch.delenv("ONCEONLY_DATABASE_URL", raising=False)
    monkeypatch.delenv("ONCEONLY_AUDIT_ORIGIN", raising=False)
    return data_dir


def _refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a refused command wrote (exit 1, nothing on standard output)."""
    capsys.readouterr()
    assert main(args) == 1
    said = capsys.readouterr()
    lines = said.err.strip().splitlines()
    assert len(lines) == 1, said.err
    assert "Traceback" not in said.err
    assert said.out == ""
    return lines[0]


def _nothing_in(data_dir: Path) -> None:
    assert not data_dir.exists() or list(data_dir.rglob("*")) == []


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda path: path.write_bytes(b""), "no such table: audit_entries"),
        (lambda path: os.truncate(path, path.stat().st_size // 2), "database.sqlite3"),
        (lambda path: path.write_bytes(os.urandom(300_000)), "file is not a database"),
    ],
    ids=["empty", "truncated", "random-bytes"],
)
def test_a_restore_refuses_a_sqlite_backup_whose_database_is_empty_or_damaged(
    sqlite_backup: Path,
    elsewhere: Path,
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[Path], object],
    said: str,
) -> None:
    damage(sqlite_backup / backup.SQLITE_FILE)
    line = _refused(["restore", str(sqlite_backup)], capsys)
    assert "nothing restored: " in line
    assert said in line
    _nothing_in(elsewhere)


def test_a_restore_refuses_a_sqlite_database_with_fewer_entries_than_its_manifest(
    sqlite_backup: Path, elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = json.loads((sqlite_backup / backup.MANIFEST).read_text())
    held = manifest["audit_entries_at_least"]
    claimed = {**manifest, "audit_entries_at_least": held + 5}
    (sqlite_backup / backup.MANIFEST).write_text(json.dumps(claimed))
    line = _refused(["restore", str(sqlite_backup)], capsys)
    assert f"holds {held} audit entries, its manifest says at least {held + 5}" in line
    _nothing_in(elsewhere)


def test_a_sound_sqlite_backup_still_restores_through_the_cli(
    sqlite_backup: Path, elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sorted(path.name for path in sqlite_backup.rglob("*"))
    assert main(["restore", str(sqlite_backup)]) == 0
    assert "restored the backup" in capsys.readouterr().out
    assert (elsewhere / "onceonly.db").is_file()
    # read as it is: no -wal or -shm made beside it (read-only media would refuse them)
    assert sorted(path.name for path in sqlite_backup.rglob("*")) == before


@pytest.fixture
def postgres_backup(tmp_path: Path, postgres_url: str) -> Path:
    empty_postgres(postgres_url)  # an earlier test of the session may have left rows
    with running_hub(database_url=postgres_url, data_dir=tmp_path / "hub") as hub:
        with hub.admin() as admin:
            admin.import_catalogue(CATALOGUE)
    made = backup.backup(postgres_url, tmp_path / "hub" / "keys", tmp_path / "backup")
    assert made.audit_entries_at_least > 0
    return tmp_path / "backup"


@pytest.fixture
def empty_postgres_target(elsewhere: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with new_database("onceonly_restore") as url:
        monkeypatch.setenv("ONCEONLY_DATABASE_URL", url)
        yield url


def _tables(url: str) -> list[str]:
    engine = make_sync_engine(url)
    try:
        with engine.connect() as conn:
            return sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()


def test_a_restore_refuses_a_postgres_dump_with_fewer_entries_than_its_manifest(
    postgres_backup: Path,
    empty_postgres_target: str,
    elsewhere: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifest = json.loads((postgres_backup / backup.MANIFEST).read_text())
    held = manifest["audit_entries_at_least"]
    claimed = {**manifest, "audit_entries_at_least": held + 5}
    (postgres_backup / backup.MANIFEST).write_text(json.dumps(claimed))
    line = _refused(["restore", str(postgres_backup)], capsys)
    assert f"holds {held} audit entries, its manifest says at least {held + 5}" in line
    assert _tables(empty_postgres_target) == []
    _nothing_in(elsewhere)


@pytest.mark.parametrize("cut", [lambda size: size * 3 // 4, lambda size: size - 300])
def test_a_restore_refuses_a_truncated_postgres_dump_before_writing(
    postgres_backup: Path,
    empty_postgres_target: str,
    elsewhere: Path,
    capsys: pytest.CaptureFixture[str],
    cut: Callable[[int], int],
) -> None:
    """Cut short anywhere: near its end too, past the audit entries' data (helper-185:
    the keys were written, then pg_restore failed, against the docs)."""
    dump = postgres_backup / backup.PGDUMP_FILE
    os.truncate(dump, cut(dump.stat().st_size))
    line = _refused(["restore", str(postgres_backup)], capsys)
    assert "pg_restore failed" in line
    assert _tables(empty_postgres_target) == []
    _nothing_in(elsewhere)


def test_a_backup_refuses_a_directory_inside_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Inside the keys, a later backup would copy the backup (and a restore take its
    files for keys); anywhere in the data directory, it is not apart from what it
    saves. A symbolic link that leads there is resolved."""
    data_dir = tmp_path / "var"
    url = f"sqlite:///{data_dir / 'onceonly.db'}"
    with running_hub(database_url=url, data_dir=data_dir):
        pass
    monkeypatch.setenv("ONCEONLY_DATA_DIR", str(data_dir))
    monkeypatch.delenv("ONCEONLY_DATABASE_URL", raising=False)
    (tmp_path / "link").symlink_to(data_dir / "keys")
    before = sorted(data_dir.rglob("*"))
    for inside in (data_dir / "keys" / "bk", data_dir / "backups" / "bk", tmp_path / "link" / "bk"):
        line = _refused(["backup", str(inside)], capsys)
        assert "no backup made: " in line
        assert f"is inside the data directory {data_dir}" in line
        assert not inside.exists()
    assert sorted(data_dir.rglob("*")) == before
    assert main(["backup", str(tmp_path / "elsewhere")]) == 0


def test_a_restore_refuses_to_rename_the_audit_log_before_writing(
    sqlite_backup: Path,
    elsewhere: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The backup's keys/audit-origin is the log's name, which every auditor's verifier
    key carries: a restore under another ONCEONLY_AUDIT_ORIGIN would end in a hub that
    config check refuses (decision 0089); the restore says so first."""
    kept = (sqlite_backup / "keys" / AUDIT_ORIGIN_FILE).read_text().strip()
    monkeypatch.setenv("ONCEONLY_AUDIT_ORIGIN", "other.example/audit")
    line = _refused(["restore", str(sqlite_backup)], capsys)
    assert "ONCEONLY_AUDIT_ORIGIN is other.example/audit" in line
    assert f"the backup's audit log is named {kept}" in line
    assert "onceonly keys init --change-audit-origin" in line
    _nothing_in(elsewhere)
    monkeypatch.setenv("ONCEONLY_AUDIT_ORIGIN", kept)
    assert main(["restore", str(sqlite_backup)]) == 0


def test_a_restore_refuses_a_backup_without_its_database_file_before_writing(
    sqlite_backup: Path, elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (sqlite_backup / backup.SQLITE_FILE).unlink()
    line = _refused(["restore", str(sqlite_backup)], capsys)
    assert f"the backup lacks {backup.SQLITE_FILE}" in line
    _nothing_in(elsewhere)


def test_a_restore_refuses_a_postgres_backup_without_its_dump_before_writing(
    postgres_backup: Path,
    empty_postgres_target: str,
    elsewhere: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (postgres_backup / backup.PGDUMP_FILE).unlink()
    line = _refused(["restore", str(postgres_backup)], capsys)
    assert f"nothing restored: the backup lacks {backup.PGDUMP_FILE}" in line
    _nothing_in(elsewhere)


def test_a_failed_postgres_restore_says_the_keys_are_in_place(
    postgres_backup: Path,
    empty_postgres_target: str,
    elsewhere: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Not "nothing restored" once the keys were put in place: the docs' way on."""
    engine = make_sync_engine(empty_postgres_target)
    with engine.begin() as conn:  # no table, but in the way of one the dump makes
        conn.execute(sa.text("CREATE TYPE audit_entries AS (x int)"))
    engine.dispose()
    line = _refused(["restore", str(postgres_backup)], capsys)
    assert "nothing restored" not in line
    assert "the database was not restored: pg_restore failed" in line
    assert f"the backup's keys are in {elsewhere / 'keys'}" in line
    assert (elsewhere / "keys" / "pseudonym.key").is_file()


def test_a_restore_makes_the_missing_folders_of_a_sqlite_database_private(
    sqlite_backup: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As ``migrate`` makes them (0700, the file 0600), whatever the umask."""
    target = elsewhere.parent / "databases" / "hub" / "onceonly.db"
    monkeypatch.setenv("ONCEONLY_DATABASE_URL", f"sqlite:///{target}")
    umask = os.umask(0o022)
    try:
        assert main(["restore", str(sqlite_backup)]) == 0
    finally:
        os.umask(umask)
    for folder in (target.parent, target.parent.parent):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    assert target.stat().st_mode & 0o777 == 0o600
