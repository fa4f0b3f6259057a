"""Two ``onceonly migrate`` started at once on a fresh database, each a process of its
own: the second waits for the first (PostgreSQL: an advisory lock; SQLite: the write
lock, taken at BEGIN), then finds nothing left to do. Both succeed, the schema is the
models', and Alembic's version table names each head once. And what ``migrate`` says it
did: from which revision to which, or nothing."""

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

import onceonly.hub.models  # noqa: F401  (every table on SQLModel.metadata)
from onceonly.hub.cli import main, startup
from onceonly.hub.db import MIGRATIONS_DIR, make_sync_engine
from onceonly.hub.migrate import upgrade

from tests.hub_testing import database_name, postgres_admin

# Imports everything `onceonly migrate` loads, says so, and migrates when told to: the
# two processes then start their migrations within a millisecond of each other.
_MIGRATE_ON_GO = """
import sys
import alembic.command, alembic.config, alembic.runtime.migration, alembic.script
import onceonly.hub.migrate, onceonly.hub.models
from onceonly.hub.cli import main
print("ready", flush=True)
sys.stdin.readline()
raise SystemExit(main(["migrate"]))
"""


def _migrate_twice_at_once(url: str, cwd: Path) -> list[tuple[int, str]]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("ONCEONLY_")}
    with ExitStack() as stack:
        processes = [
            stack.enter_context(
                subprocess.Popen(
                    [sys.executable, "-c", _MIGRATE_ON_GO],
                    cwd=cwd,
                    env={**clean, "ONCEONLY_DATABASE_URL": url},
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
            for _ in range(2)
        ]
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.close()
        return [_finished(process) for process in processes]


def _finished(process: "subprocess.Popen[str]") -> tuple[int, str]:
    """Its exit status and everything it wrote."""
    assert process.stdout is not None
    output = process.stdout.read()
    return process.wait(120), output


def _assert_migrated_once(url: str) -> None:
    engine = make_sync_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": False})
            assert compare_metadata(context, SQLModel.metadata) == []
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
            assert sorted(versions) == sorted(_heads())
    finally:
        engine.dispose()


def _heads() -> tuple[str, ...]:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_heads()


@pytest.fixture
def fresh_postgres(postgres_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (no schema at all), dropped after."""
    url = f"{postgres_url}_fresh_{uuid.uuid4().hex[:8]}"
    with postgres_admin(postgres_url) as admin:
        admin.execute(sa.text(f'CREATE DATABASE "{database_name(url)}"'))
    yield url
    with postgres_admin(postgres_url) as admin:
        admin.execute(sa.text(f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)'))


@pytest.mark.postgres
def test_two_migrations_at_once_on_a_fresh_postgres_both_succeed(
    fresh_postgres: str, tmp_path: Path
) -> None:
    ran = _migrate_twice_at_once(fresh_postgres, tmp_path)
    assert [status for status, _ in ran] == [0, 0], ran
    _assert_one_migrated_and_one_found_it_done(ran)
    _assert_migrated_once(fresh_postgres)


def test_two_migrations_at_once_on_a_fresh_sqlite_file_both_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    ran = _migrate_twice_at_once(url, tmp_path)
    assert [status for status, _ in ran] == [0, 0], ran
    _assert_one_migrated_and_one_found_it_done(ran)
    _assert_migrated_once(url)


def _assert_one_migrated_and_one_found_it_done(ran: list[tuple[int, str]]) -> None:
    (head,) = _heads()
    said = sorted(output.splitlines()[-1].split(": ", 1)[1] for _, output in ran)
    assert said == [f"already at {head}", f"migrated from empty to {head}"], ran


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    return str(request.getfixturevalue("fresh_postgres"))


def test_migrate_says_from_which_revision_to_which_or_that_there_was_nothing_to_do(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said "database is at the newest schema" on an empty database, after migrating
    it, and when there was nothing to do (decision 0076)."""
    (head,) = _heads()
    monkeypatch.setenv("ONCEONLY_DATABASE_URL", fresh_database)
    name = startup.database_name(fresh_database)
    for said in [f"migrated from empty to {head}", f"already at {head}"]:
        assert main(["migrate"]) == 0
        assert capsys.readouterr().out == f"{name}: {said}\n"


def test_migrate_names_the_revision_it_started_from(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (head,) = _heads()
    upgrade(fresh_database, "0007")
    monkeypatch.setenv("ONCEONLY_DATABASE_URL", fresh_database)
    assert main(["migrate"]) == 0
    name = startup.database_name(fresh_database)
    assert capsys.readouterr().out == f"{name}: migrated from 0007 to {head}\n"
