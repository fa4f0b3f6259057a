"""The migrations build exactly the tables the models describe, on both databases."""

import json
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import onceonly.hub.models  # noqa: F401  (every table on SQLModel.metadata)
from onceonly.hub.db import MIGRATIONS_DIR, make_sync_engine
from onceonly.hub.migrate import is_current, upgrade


def test_migrated_database_matches_the_models(database_url: str) -> None:
    engine = make_sync_engine(database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        differences = compare_metadata(context, SQLModel.metadata)
    engine.dispose()
    assert differences == []


def test_database_is_at_the_newest_revision(database_url: str) -> None:
    assert is_current(database_url)


# Every revision but the newest: a database left at any of them upgrades.
OLDER = sorted(path.name[:4] for path in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py"))[:-1]


@pytest.mark.parametrize("revision", OLDER)
def test_an_older_database_upgrades_to_the_newest(revision: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'step.db'}"
    upgrade(url, revision)
    assert not is_current(url)
    upgrade(url)
    assert is_current(url)


def test_upgrade_counts_fields_with_a_personal_part_inside_as_personal(tmp_path: Path) -> None:
    """Migration 0008 recomputes the personal fields of versions stored before it."""
    path = tmp_path / "step.db"
    upgrade(f"sqlite:///{path}", "0007")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "code": {"type": "string"},
            "holder": {"type": "object", "properties": {"name": {"$ref": "#/$defs/name"}}},
            "marked": {"type": "string", "x-personal": True},
        },
        "$defs": {"name": {"type": "string", "x-personal": True}},
    }
    with sqlite3.connect(path) as conn:  # foreign keys are not enforced on a bare connection
        conn.execute(
            "INSERT INTO item_versions (item_id, version, schema, fingerprint, personal_fields,"
            " created_at) VALUES ('x.item', 1, ?, 'f', ?, '2026-01-01 00:00:00')",
            (json.dumps(schema), json.dumps(["marked"])),
        )
    upgrade(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        (stored,) = conn.execute("SELECT personal_fields FROM item_versions").fetchone()
    assert json.loads(stored) == ["holder", "marked"]
