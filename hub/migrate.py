"""Schema migrations with Alembic, run from code (start-up, CLI, tests)."""

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from onceonly.hub.db import MIGRATIONS_DIR, make_sync_engine


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(url: str, revision: str = "heads") -> None:
    engine = make_sync_engine(url)
    try:
        with engine.begin() as connection:
            config = _config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def is_current(url: str) -> bool:
    """Whether the database is at the newest revision that this code knows."""
    heads = set(ScriptDirectory.from_config(_config()).get_heads())
    engine = make_sync_engine(url)
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()
    return current == heads
