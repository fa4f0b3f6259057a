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
import re
import shutil
import sqlite3
import subprocess
import tempfile
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from onceonly.hub.config import AUDIT_ORIGIN_FILE
from onceonly.hub.db import driver_message, probe_engine
from onceonly.hub.keys import REMADE_KEY_FILES, key_file_names
from onceonly.hub.kit.keyfiles import make_folder, own_like_folder

SQLITE_FILE, PGDUMP_FILE, MANIFEST = "database.sqlite3", "database.pgdump", "manifest.json"
_CONNECT_TIMEOUT = 10  # seconds to reach PostgreSQL before giving up
_TOOL_TIMEOUT = 3600.0  # a large database takes a while; a hung tool does not hang forever


class BackupError(Exception):
    """The backup or restore could not be done; the message says why, in one line.
    ``keys_in_place``: a restore had put the backup's keys in place when its database
    failed (the database is as empty as before; running it again goes on)."""

    def __init__(self, message: str, *, keys_in_place: bool = False) -> None:
        super().__init__(message)
        self.keys_in_place = keys_in_place


@dataclass(frozen=True)
class Manifest:
    taken_at: str
    database: str  # "sqlite" or "postgresql"
    hub_version: str
    audit_entries_at_least: int

    def as_json(self) -> str:
        return json.dumps(self.__dict__, indent=2) + "\n"


def backup(
    database_url: str, keys_dir: Path, destination: Path, *, data_dir: Path | None = None
) -> Manifest:
    """Write a backup of the database at ``database_url`` and of ``keys_dir`` into the
    new directory ``destination`` (made here: an existing one is never used), which is
    not inside ``keys_dir`` nor inside the hub's ``data_dir``."""
    try:
        _refuse_inside(destination, data_dir=data_dir, keys_dir=keys_dir)
        return _backup(database_url, keys_dir, destination)
    except (OSError, ValueError, sqlite3.Error) as error:  # a path, a URL, a damaged file
        raise BackupError(f"{type(error).__name__}: {error}") from error


def _refuse_inside(destination: Path, *, data_dir: Path | None, keys_dir: Path) -> None:
    """A backup in the key directory would be copied by every later backup, and taken
    for key files by a restore; one elsewhere in the data directory is not apart from
    what it saves. Symbolic links are followed: where the files would land counts."""
    landing = destination.resolve()
    for name, folder in (("data directory", data_dir), ("key directory", keys_dir)):
        if folder is not None and landing.is_relative_to(folder.resolve()):
            raise BackupError(
                f"{destination} is inside the {name} {folder}; put backups apart from it"
            )


def _backup(database_url: str, keys_dir: Path, destination: Path) -> Manifest:
    missing = _missing_keys(keys_dir)
    if missing:
        raise BackupError(
            f"the key directory {keys_dir} lacks {', '.join(missing)}; a backup without"
            " every key cannot be restored (onceonly keys init makes them)"
        )
    url = make_url(database_url)
    kind = url.get_backend_name()
    if kind not in ("sqlite", "postgresql"):
        raise BackupError(f"unsupported database {kind!r}")
    entries = _count_entries(database_url)
    try:
        destination.mkdir(mode=0o700)  # atomic: fails when anything is there already
    except FileExistsError:
        raise BackupError(f"{destination} exists; a backup goes into a new directory") from None
    try:
        if kind == "sqlite":
            _sqlite_backup(_sqlite_path(url), destination / SQLITE_FILE)
        else:
            dump = ["pg_dump", "--format=custom", "--no-owner", "--no-privileges"]
            _run([*dump, "--file", str(destination / PGDUMP_FILE)], url)
        _copy_keys(keys_dir, destination / "keys")
        manifest = Manifest(
            taken_at=datetime.now(UTC).isoformat(timespec="seconds"),
            database=kind,
            hub_version=_hub_version(),
            audit_entries_at_least=entries,
        )
        for path in destination.rglob("*"):
            path.chmod(0o700 if path.is_dir() else 0o600)
        # Last: a directory without its manifest is not a backup, restore refuses it.
        _write_private(destination / MANIFEST, manifest.as_json().encode())
    except BaseException:
        shutil.rmtree(destination, ignore_errors=True)
        raise
    return manifest


def restore(
    source: Path, database_url: str, keys_dir: Path, *, audit_origin: str | None = None
) -> Manifest:
    """Restore the backup in ``source`` into the empty database at ``database_url`` and
    put its keys into ``keys_dir``; ``audit_origin``, when set, must be the backup's log
    name. Run ``onceonly migrate`` afterwards (a backup of an earlier version is brought
    up to date), then start the hub."""
    try:
        return _restore(source, database_url, keys_dir, audit_origin=audit_origin)
    except (OSError, ValueError, sqlite3.Error) as error:
        raise BackupError(f"{type(error).__name__}: {error}") from error


def _restore(
    source: Path, database_url: str, keys_dir: Path, *, audit_origin: str | None
) -> Manifest:
    manifest = read_manifest(source)
    url = make_url(database_url)
    if url.get_backend_name() != manifest.database:
        raise BackupError(
            f"the backup is of a {manifest.database} database, the target is "
            f"{url.get_backend_name()}"
        )
    # Everything that can refuse, before anything is written.
    dumped = SQLITE_FILE if manifest.database == "sqlite" else PGDUMP_FILE
    if not (source / dumped).is_file():
        raise BackupError(f"the backup lacks {dumped}: {source} is not a whole backup")
    # A key that guards nothing stored (REMADE_KEY_FILES) may be missing from a backup
    # made before it existed: `onceonly keys init` makes it anew.
    missing = [name for name in _missing_keys(source / "keys") if name not in REMADE_KEY_FILES]
    if missing:
        raise BackupError(f"the backup lacks the key files {', '.join(missing)}")
    _check_origin(source / "keys", audit_origin)
    _check_keys(source / "keys", keys_dir)
    if manifest.database == "sqlite":
        target = _sqlite_path(url)
        if target.exists():
            raise BackupError(f"{target} exists; restore into a new database file")
    elif _has_tables(database_url):
        raise BackupError("the target database is not empty; restore into a new database")
    _check_entries(source, manifest)
    # The keys first: if the database then fails, running restore again finds the same
    # keys in place and an empty database, and goes on.
    _copy_keys(source / "keys", keys_dir, only_missing=True)
    try:
        _restore_database(source, manifest, database_url)
    except BackupError as error:
        error.keys_in_place = True
        raise
    except (OSError, sqlite3.Error) as error:
        reason = f"{type(error).__name__}: {error}"
        raise BackupError(reason, keys_in_place=True) from error
    return manifest


def _restore_database(source: Path, manifest: Manifest, database_url: str) -> None:
    if manifest.database == "postgresql":
        _pg_restore(source / PGDUMP_FILE, make_url(database_url))
        return
    # The missing folders 0700 and the file 0600, as `onceonly migrate` makes them.
    probe_engine(database_url, connect_timeout=_CONNECT_TIMEOUT, make_file=True).dispose()
    target = _sqlite_path(make_url(database_url))
    try:
        _sqlite_backup(source / SQLITE_FILE, target, unchanging=True)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _check_origin(backed_up: Path, configured: str | None) -> None:
    """The log's name is the backup's (decision 0089): every auditor's verifier key
    carries it, and a hub configured with another refuses to start."""
    kept = backed_up / AUDIT_ORIGIN_FILE
    if configured is None or not kept.is_file():
        return
    name = kept.read_text(encoding="utf-8").strip()
    if name != configured:
        raise BackupError(
            f"ONCEONLY_AUDIT_ORIGIN is {configured} but the backup's audit log is named"
            f" {name}: restore with it set to {name}; to rename the log deliberately,"
            " set the new name afterwards and run `onceonly keys init --change-audit-origin`"
            ' (docs/operations.md, "Changing the audit log\'s name")'
        )


def _check_entries(source: Path, manifest: Manifest) -> None:
    """The backup's database reads through and holds at least the audit entries its
    manifest counted when the backup was taken: an empty, truncated or other file in
    its place is refused before anything is written, not found out after ``migrate``
    made a new, empty hub on the old keys (an operator's review)."""
    if manifest.database == "sqlite":
        held = _sound_sqlite_entries(source / SQLITE_FILE)
    else:
        held = _dumped_entries(source / PGDUMP_FILE)
    if held < manifest.audit_entries_at_least:
        raise BackupError(
            f"the backup's database holds {held} audit entries, its manifest says at least"
            f" {manifest.audit_entries_at_least}: it is damaged or not this backup's"
        )


def _read_only(path: Path, *, unchanging: bool) -> str:
    """The URI that opens ``path`` read-only. A backup's database does not change while
    it is read: opened ``immutable``, SQLite neither makes nor needs -wal and -shm files
    beside it (a copy in WAL mode did, so a backup on read-only media could not be
    restored, and one on writable media was changed by its restore)."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    return f"{uri}&immutable=1" if unchanging else uri


def _sound_sqlite_entries(path: Path) -> int:
    """The audit entries of the SQLite database at ``path``, once SQLite found its pages
    sound (``quick_check``: every page read, without matching indexes to tables)."""
    if not path.is_file():
        raise BackupError(f"no database file at {path}")
    try:
        with closing(sqlite3.connect(_read_only(path, unchanging=True), uri=True)) as database:
            problems = [str(row[0]) for row in database.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise BackupError(f"{path} is damaged: {problems[0]}")
            return int(database.execute("SELECT count(*) FROM audit_entries").fetchone()[0])
    except sqlite3.Error as error:
        raise BackupError(f"{path} is not a sound hub database: {error}") from error


def _dumped_entries(dump: Path) -> int:
    """The rows of ``audit_entries`` in the pg_dump archive ``dump``, read through from
    the file without connecting anywhere: a damaged archive fails here. COPY's text
    format is one line a row (a newline in a value is written as ``\\n``)."""
    _installed("pg_restore")
    # every table's data, not only audit_entries': the archive is read to its end, so a
    # copy cut short after that table is refused here too, before a key is written
    command = ["pg_restore", "--data-only", "--file=-", str(dump)]
    with (
        tempfile.TemporaryFile() as errors,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors) as tool,
    ):
        rows, copying, counted = 0, False, False
        for line in tool.stdout or ():
            if copying and line == b"\\.\n":
                copying = False
            elif copying:
                rows += counted
            elif line.startswith(b"COPY "):
                copying = True
                counted = line.split(b" ", 2)[1] in (b"public.audit_entries", b"audit_entries")
        code = tool.wait()  # stdout is at its end: the tool is done
        errors.seek(0)
        said = errors.read().decode(errors="replace")
    if code != 0:
        raise BackupError(f"pg_restore failed (exit {code}): {_first_error(said)}")
    return rows


# An extension in the dump (pg_dump takes every one installed, and has no way to leave
# them out before PostgreSQL 17): its entry and its comment's, with its name. The hub's
# schema needs none; one an operator added (amcheck, for `onceonly audit check-nodes`)
# may be one the restoring role cannot create (only a superuser creates an untrusted
# one), or the target server lacks, and creating it would fail the whole restore.
_EXTENSION_ENTRY = re.compile(r"^\d+; \d+ \d+ (?:EXTENSION - |COMMENT - EXTENSION )(\S+)")

# The extensions the connected role can create here: every one the server has for a
# superuser, the trusted ones for a role that may create in the database.
_CREATABLE = """
SELECT DISTINCT name FROM pg_available_extension_versions
WHERE (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
   OR (trusted AND has_database_privilege(current_database(), 'CREATE'))
"""


def _pg_restore(dump: Path, url: URL) -> None:
    """The dump's objects, in one transaction: a restore that fails leaves the database
    as empty as it was. An extension the restoring role cannot create on this server is
    left out (the hub's role restoring a dump with amcheck; a server without contrib);
    one it can create is restored, and what depends on it (an operator's index of an
    extension's kind: helper-138)."""
    listing = _run(["pg_restore", "--list", str(dump)], url)
    creatable = _creatable_extensions(url)
    kept = [
        line
        for line in listing.splitlines()
        if (entry := _EXTENSION_ENTRY.match(line)) is None or entry.group(1) in creatable
    ]
    with tempfile.TemporaryDirectory() as folder:
        use_list = Path(folder) / "restore.list"
        use_list.write_text("\n".join(kept) + "\n")
        restore = ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error"]
        _run([*restore, "--single-transaction", "--use-list", str(use_list), str(dump)], url)


def _creatable_extensions(url: URL) -> set[str]:
    database = url.render_as_string(hide_password=False)
    engine = probe_engine(database, connect_timeout=_CONNECT_TIMEOUT)
    try:
        with engine.connect() as conn:
            return {str(name) for name in conn.execute(sa.text(_CREATABLE)).scalars()}
    except sa.exc.SQLAlchemyError as error:
        raise BackupError(f"cannot read the database: {driver_message(error)}") from error
    finally:
        engine.dispose()


def read_manifest(source: Path) -> Manifest:
    if not source.is_dir():
        raise BackupError(f"{source} is not a directory made by onceonly backup")
    try:
        data = json.loads((source / MANIFEST).read_text())
        manifest = Manifest(**data)
    except FileNotFoundError as error:
        raise BackupError(f"{source} holds no {MANIFEST}: not an onceonly backup") from error
    except (ValueError, TypeError, OSError) as error:
        raise BackupError(f"{source / MANIFEST} is damaged: {error}") from error
    kinds = {"taken_at": str, "database": str, "hub_version": str, "audit_entries_at_least": int}
    wrong = [name for name, kind in kinds.items() if type(getattr(manifest, name)) is not kind]
    if wrong or manifest.database not in ("sqlite", "postgresql"):
        raise BackupError(f"{source / MANIFEST} is damaged: {', '.join(wrong) or 'database'}")
    return manifest


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(url.database)


def _sqlite_backup(source: Path, target: Path, *, unchanging: bool = False) -> None:
    """Copy ``source`` to ``target``: a live database while writers go on, or (when
    ``unchanging``) a backup's, read as it is (:func:`_read_only`)."""
    if not source.is_file():
        raise BackupError(f"no database file at {source}")
    # The online backup API copies a consistent state while writers go on (WAL).
    with (
        sqlite3.connect(_read_only(source, unchanging=unchanging), uri=True) as origin,
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


def _run(command: list[str], url: URL) -> str:
    """Run a PostgreSQL client tool on the database at ``url``: what it wrote to
    standard output."""
    uri, env = _libpq(url)
    _installed(command[0])
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
        raise BackupError(
            f"{command[0]} failed (exit {done.returncode}): {_first_error(done.stderr)}"
        )
    return done.stdout


def _installed(tool: str) -> None:
    if shutil.which(tool) is None:
        raise BackupError(f"{tool} is not installed (Debian: apt install postgresql-client)")


def _first_error(stderr: str) -> str:
    """The line of a PostgreSQL client tool's standard error that says what failed."""
    lines = stderr.strip().splitlines() or ["(no message)"]
    return next((line for line in lines if "error:" in line), lines[-1])


def _count_entries(database_url: str) -> int:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = _sqlite_path(url)
        if not path.is_file():
            raise BackupError(f"no database file at {path}")
        try:
            with sqlite3.connect(_read_only(path, unchanging=False), uri=True) as database:
                count = database.execute("SELECT count(*) FROM audit_entries").fetchone()[0]
            database.close()
            return int(count)
        except sqlite3.Error as error:
            raise BackupError(f"cannot read {path}: {error}") from error
    engine = probe_engine(database_url, connect_timeout=_CONNECT_TIMEOUT)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM audit_entries")).scalar_one())
    except sa.exc.SQLAlchemyError as error:
        raise BackupError(f"cannot read the database: {driver_message(error)}") from error
    finally:
        engine.dispose()


def _has_tables(database_url: str) -> bool:
    engine = probe_engine(database_url, connect_timeout=_CONNECT_TIMEOUT)
    try:
        with engine.connect() as conn:
            return bool(sa.inspect(conn).get_table_names())
    except sa.exc.SQLAlchemyError as error:
        raise BackupError(f"cannot reach the target database: {driver_message(error)}") from error
    finally:
        engine.dispose()


def _key_files(directory: Path) -> list[Path]:
    """Every key file under ``directory`` (signing keys sit in a subdirectory), relative;
    hidden names (lock files, a Kubernetes Secret mount's ``..data``) left out."""
    if not directory.is_dir():
        return []
    found = (path.relative_to(directory) for path in directory.rglob("*") if path.is_file())
    return sorted(p for p in found if not any(part.startswith(".") for part in p.parts))


def _missing_keys(directory: Path) -> list[str]:
    return [name for name in key_file_names(directory) if not (directory / name).is_file()]


def _copy_keys(source: Path, target: Path, *, only_missing: bool = False) -> None:
    for name in _key_files(source):
        destination = target / name
        if only_missing and destination.exists():
            continue
        make_folder(destination.parent)
        _write_private(destination, (source / name).read_bytes())


def _check_keys(backed_up: Path, keys_dir: Path) -> None:
    """Keys already in place must be the backup's: a database under other keys would
    lose its people's one-time codes and split every subject's history."""
    for name in _key_files(backed_up):
        present = keys_dir / name
        if present.is_file() and present.read_bytes() != (backed_up / name).read_bytes():
            raise BackupError(
                f"{present} differs from the backup's; restore into an empty key directory"
            )


def _write_private(path: Path, content: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        own_like_folder(descriptor, path.parent)  # restored by root: the hub's, still
        file.write(content)
        file.flush()
        os.fsync(file.fileno())


def _hub_version() -> str:
    try:
        return version("onceonly")
    except PackageNotFoundError:
        return "unknown"
