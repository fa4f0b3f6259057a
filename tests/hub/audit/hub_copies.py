"""A hub's state built once and copied: its database and its data directory (keys).

A test that changes a world for good (tampers with the log, rotates keys, restarts
the hub) needs a world of its own, but not its own catalogue import, clients, grants
or verified log: those are built once per database and test process, saved
(:func:`save`), and copied into each test's fresh database and data directory
(:func:`restore`) before its hub starts, as conftest copies a migrated SQLite
template instead of migrating again.

SQLite is saved with the online backup API (a consistent copy, also of a database a
running hub writes to) and restored by copying the file. PostgreSQL is saved as
``COPY ... TO STDOUT`` of every table in one snapshot and restored with ``COPY ...
FROM STDIN`` into the test's emptied database (conftest's ``database_url``), with
foreign keys and the audit log's triggers set aside for that transaction, as
``empty_postgres`` sets them aside to empty it: no database is created or dropped
per test (each DROP DATABASE waits for a checkpoint). The hub has no sequences, so
the rows are all its state.
"""

import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url


@dataclass(frozen=True)
class Saved:
    """One saved state: the database's content, the data directory, and whatever the
    builder wants back (keys of clients it registered, an auditor's state...)."""

    sqlite_file: Path | None
    tables: dict[str, bytes]
    data_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)


def _sqlite_path(database_url: str) -> Path | None:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return None
    assert url.database, database_url
    assert url.database != ":memory:", database_url
    return Path(url.database)


def _postgres_dsn(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


def save(database_url: str, data_dir: Path, directory: Path, **extra: Any) -> Saved:
    """Save the database at ``database_url`` and ``data_dir`` under ``directory`` (a
    hub may still be running on them, as long as nothing changes them meanwhile)."""
    directory.mkdir(parents=True, exist_ok=True)
    saved_dir = directory / "data"
    shutil.copytree(data_dir, saved_dir)
    path = _sqlite_path(database_url)
    if path is not None:
        copy = directory / "hub.db"
        source, target = sqlite3.connect(path), sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
        return Saved(sqlite_file=copy, tables={}, data_dir=saved_dir, extra=extra)
    tables: dict[str, bytes] = {}
    with psycopg.connect(_postgres_dsn(database_url)) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        names = conn.execute(
            "SELECT tablename FROM pg_tables"
            " WHERE schemaname = 'public' AND tablename <> 'alembic_version' ORDER BY tablename"
        ).fetchall()
        sequences = conn.execute("SELECT sequence_name FROM information_schema.sequences")
        assert not sequences.fetchall(), "a sequence's value is state that COPY does not save"
        cursor = conn.cursor()
        for (name,) in names:
            with cursor.copy(f'COPY "{name}" TO STDOUT') as copy:
                tables[name] = b"".join(bytes(block) for block in copy)
    return Saved(sqlite_file=None, tables=tables, data_dir=saved_dir, extra=extra)


def restore(saved: Saved, database_url: str, data_dir: Path) -> None:
    """Put ``saved`` into the fresh, empty database at ``database_url`` (conftest's
    ``database_url``) and into ``data_dir`` (which must not exist yet)."""
    shutil.copytree(saved.data_dir, data_dir)
    path = _sqlite_path(database_url)
    if path is not None:
        assert saved.sqlite_file is not None, "saved from PostgreSQL"
        for suffix in ("-wal", "-shm"):
            assert not path.with_name(path.name + suffix).exists(), "database in use"
        shutil.copyfile(saved.sqlite_file, path)
        return
    assert saved.sqlite_file is None, "saved from SQLite"
    with psycopg.connect(_postgres_dsn(database_url)) as conn:
        conn.execute("SET LOCAL session_replication_role = replica")
        cursor = conn.cursor()
        for name, data in saved.tables.items():
            if name == "facts_generation":  # its one row is kept when emptied
                cursor.execute('DELETE FROM "facts_generation"')
            with cursor.copy(f'COPY "{name}" FROM STDIN') as copy:
                copy.write(data)
        # A value no running hub holds facts for (decision 0038), as its triggers give.
        cursor.execute("UPDATE facts_generation SET value = (random() * 9e18)::bigint")


class Copies:
    """A module's saved states, by name and database kind, each built on first use.

    ``world(name, database_url, data_dir, build)``: the first time for that name and
    kind, ``build(database_url, scratch)`` builds the state in the test's database
    (its hub's data directory under ``scratch``; it returns that directory and the
    extra to keep), which is saved and its data directory copied to ``data_dir``;
    every later time the saved state is restored into the database and ``data_dir``.
    Either way the test then finds the same state, and gets the extra back."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._saved: dict[tuple[str, str], Saved] = {}

    def saved(self, name: str, database_url: str) -> Saved | None:
        return self._saved.get((name, _kind(database_url)))

    def keep(self, name: str, database_url: str, data_dir: Path, **extra: Any) -> Saved:
        """Save the state now in ``database_url`` and ``data_dir`` as ``name``."""
        key = (name, _kind(database_url))
        assert key not in self._saved, f"{name} saved twice"
        saved = save(database_url, data_dir, self._directory / "-".join(key), **extra)
        self._saved[key] = saved
        return saved

    def world(
        self,
        name: str,
        database_url: str,
        data_dir: Path,
        build: Callable[[str, Path], tuple[Path, dict[str, Any]]],
    ) -> dict[str, Any]:
        found = self.saved(name, database_url)
        if found is not None:
            restore(found, database_url, data_dir)
            return found.extra
        scratch = self._directory / f"{name}-{_kind(database_url)}-build"
        built_dir, extra = build(database_url, scratch)
        saved = self.keep(name, database_url, built_dir, **extra)
        shutil.copytree(saved.data_dir, data_dir)
        return saved.extra


def _kind(database_url: str) -> str:
    return "sqlite" if _sqlite_path(database_url) is not None else "postgres"
