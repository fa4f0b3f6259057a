"""Backups of a hub, taken while it runs, and their restore (docs/operations.md).

A backup is one directory, as secret as the keys it holds:

- ``database.sqlite3`` (SQLite: the online backup API, a consistent copy while the
  hub keeps writing) or ``database.pgdump`` (PostgreSQL: ``pg_dump --format=custom``,
  one consistent snapshot);
- ``keys/``: every file of the hub's key directory. The database's sealed TOTP
  secrets open only under the derivation roots that sealed them, its pseudonyms
  were made with the pseudonym secret, and its checkpoints were signed with the
  checkpoint key: a database without its keys is not a backup;
- ``manifest.json``: when it was taken, which database kind, the hub's version and
  ``audit_entries_at_least`` (entries are only ever appended, so the copy holds at
  least the entries counted before it started).

A restore goes into an **empty** database only, and puts the keys back where none are;
where keys exist they must be the backup's own. What it cannot give back are the
entries acknowledged after the backup was taken: auditors who saw a later checkpoint
will rightly report a SHRINK or a FORK (docs/operations.md says how to avoid that).
"""

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from onceonly.hub.db import make_sync_engine

SQLITE_FILE, PGDUMP_FILE, MANIFEST = "database.sqlite3", "database.pgdump", "manifest.json"
_TOOL_TIMEOUT = 3600.0  # a large database takes a while; a hung tool does not hang forever


class BackupError(Exception):
    """The backup or restore could not be done; the message says why, in one line."""


@dataclass(frozen=True)
class Manifest:
    taken_at: str
    database: str  # "sqlite" or "postgresql"
    hub_version: str
    audit_entries_at_least: int

    def as_json(self) -> str:
        return json.dumps(self.__dict__, indent=2) + "\n"


def backup(database_url: str, keys_dir: Path, destination: Path) -> Manifest:
    """Write a backup of the database at ``database_url`` and of ``keys_dir`` into the
    new directory ``destination`` (it must not exist: nothing is overwritten)."""
    if destination.exists():
        raise BackupError(f"{destination} exists; a backup goes into a new directory")
    if not keys_dir.is_dir():
        raise BackupError(f"no key directory at {keys_dir}; run onceonly keys init")
    url = make_url(database_url)
    kind = url.get_backend_name()
    entries = _count_entries(database_url)
    # Build beside the destination, then rename: a failed backup leaves nothing that
    # looks like a backup.
    destination.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{destination.name}-", dir=destination.parent))
    try:
        if kind == "sqlite":
            _sqlite_backup(_sqlite_path(url), work / SQLITE_FILE)
        elif kind == "postgresql":
            _run(
                ["pg_dump", "--format=custom", "--no-owner", "--file", str(work / PGDUMP_FILE)], url
            )
        else:
            raise BackupError(f"unsupported database {kind!r}")
        _copy_keys(keys_dir, work / "keys")
        manifest = Manifest(
            taken_at=datetime.now(UTC).isoformat(timespec="seconds"),
            database=kind,
            hub_version=_hub_version(),
            audit_entries_at_least=entries,
        )
        _write_private(work / MANIFEST, manifest.as_json().encode())
        for path in work.rglob("*"):
            path.chmod(0o700 if path.is_dir() else 0o600)
        work.rename(destination)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def restore(source: Path, database_url: str, keys_dir: Path) -> Manifest:
    """Restore the backup in ``source`` into the empty database at ``database_url`` and
    put its keys into ``keys_dir``. Run ``onceonly migrate`` afterwards (a backup of an
    earlier version is brought up to date), then start the hub."""
    manifest = read_manifest(source)
    url = make_url(database_url)
    if url.get_backend_name() != manifest.database:
        raise BackupError(
            f"the backup is of a {manifest.database} database, the target is "
            f"{url.get_backend_name()}"
        )
    _check_keys(source / "keys", keys_dir)  # before touching the database
    if manifest.database == "sqlite":
        target = _sqlite_path(url)
        if target.exists() and target.stat().st_size > 0:
            raise BackupError(f"{target} exists; restore into a new database file")
        target.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_backup(source / SQLITE_FILE, target)
    else:
        if _has_tables(database_url):
            raise BackupError("the target database is not empty; restore into a new database")
        _run(["pg_restore", "--no-owner", "--exit-on-error", str(source / PGDUMP_FILE)], url)
    _copy_keys(source / "keys", keys_dir, only_missing=True)
    return manifest


def read_manifest(source: Path) -> Manifest:
    try:
        data = json.loads((source / MANIFEST).read_text())
        return Manifest(**data)
    except FileNotFoundError as error:
        raise BackupError(f"{source} holds no {MANIFEST}: not an onceonly backup") from error
    except (ValueError, TypeError) as error:
        raise BackupError(f"{source / MANIFEST} is damaged: {error}") from error


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(url.database)


def _sqlite_backup(source: Path, target: Path) -> None:
    if not source.is_file():
        raise BackupError(f"no database file at {source}")
    # The online backup API copies a consistent state while writers go on (WAL).
    with (
        sqlite3.connect(f"file:{source}?mode=ro", uri=True) as origin,
        sqlite3.connect(target) as copy,
    ):
        origin.backup(copy)
    copy.close()
    origin.close()
    target.chmod(0o600)


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password (argv is visible to every local user) and the
    environment that carries it."""
    env = {**os.environ}
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run(command: list[str], url: URL) -> None:
    uri, env = _libpq(url)
    if shutil.which(command[0]) is None:
        raise BackupError(f"{command[0]} is not installed (Debian: apt install postgresql-client)")
    try:
        done = subprocess.run(
            [*command, "--dbname", uri],
            env=env,
            capture_output=True,
            text=True,
            timeout=_TOOL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise BackupError(f"{command[0]} did not finish in {_TOOL_TIMEOUT:.0f} s") from error
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise BackupError(f"{command[0]} failed (exit {done.returncode}): {last}")


def _count_entries(database_url: str) -> int:
    engine = make_sync_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM audit_entries")).scalar_one())
    except sa.exc.SQLAlchemyError as error:
        raise BackupError(f"cannot read the database: {type(error).__name__}") from error
    finally:
        engine.dispose()


def _has_tables(database_url: str) -> bool:
    engine = make_sync_engine(database_url)
    try:
        with engine.connect() as conn:
            return bool(sa.inspect(conn).get_table_names())
    except sa.exc.SQLAlchemyError as error:
        raise BackupError(f"cannot reach the target database: {type(error).__name__}") from error
    finally:
        engine.dispose()


def _key_files(directory: Path) -> list[Path]:
    """Every key file under ``directory`` (signing keys sit in a subdirectory), relative."""
    return sorted(p.relative_to(directory) for p in directory.rglob("*") if p.is_file())


def _copy_keys(source: Path, target: Path, *, only_missing: bool = False) -> None:
    for name in _key_files(source):
        destination = target / name
        if only_missing and destination.exists():
            continue
        destination.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(destination, (source / name).read_bytes())


def _check_keys(backed_up: Path, keys_dir: Path) -> None:
    """Keys already in place must be the backup's: a database under other keys would
    lose its people's one-time codes and split every subject's history."""
    if not backed_up.is_dir():
        raise BackupError(f"{backed_up} is missing: a backup without keys cannot be restored")
    for name in _key_files(backed_up):
        present = keys_dir / name
        if present.is_file() and present.read_bytes() != (backed_up / name).read_bytes():
            raise BackupError(
                f"{present} differs from the backup's; restore into an empty key directory"
            )


def _write_private(path: Path, content: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())


def _hub_version() -> str:
    try:
        return version("onceonly")
    except PackageNotFoundError:
        return "unknown"
