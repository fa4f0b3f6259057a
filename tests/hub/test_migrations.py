"""The migrations build exactly the tables the models describe, on both databases."""

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import hub.models  # noqa: F401  (every table on SQLModel.metadata)
from hub.db import make_sync_engine
from hub.migrate import is_current, upgrade


def test_migrated_database_matches_the_models(database_url: str) -> None:
    engine = make_sync_engine(database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        differences = compare_metadata(context, SQLModel.metadata)
    engine.dispose()
    assert differences == []


def test_database_is_at_the_newest_revision(database_url: str) -> None:
    assert is_current(database_url)


@pytest.mark.parametrize("revision", ["0001", "0002", "0003", "0004", "0005", "0006"])
def test_an_older_database_upgrades_to_the_newest(revision: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'step.db'}"
    upgrade(url, revision)
    assert not is_current(url)
    upgrade(url)
    assert is_current(url)
