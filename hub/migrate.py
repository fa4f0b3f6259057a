"""Schema migrations with Alembic, run from code (start-up, CLI, tests).

Alembic is imported when a migration or a check runs, not with this module: the
hub's application imports it, and a process that never migrates (a production
hub that only checks, most CLI commands) need not load Alembic, Mako and Pygments.
The newest revisions are read from the migration scripts once per process (loading
them runs every script): a process that starts many hubs (tests, the demo) finds each
database current with one query instead of ~5 ms of Alembic.
"""

import functools
from typing import TYPE_CHECKING

import sqlalchemy as sa

from onceonly.hub.db import MIGRATIONS_DIR, make_sync_engine

if TYPE_CHECKING:
    from alembic.config import Config


def _config() -> "Config":
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@functools.cache
def _heads() -> frozenset[str]:
    """The newest revisions that this code knows (the scripts ship with the code)."""
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(_config()).get_heads())


def _current(connection: sa.Connection) -> frozenset[str]:
    from alembic.runtime.migration import MigrationContext

    return frozenset(MigrationContext.configure(connection).get_current_heads())


def upgrade(url: str, revision: str = "heads") -> None:
    from alembic import command

    engine = make_sync_engine(url)
    try:
        with engine.begin() as connection:
            if revision == "heads" and _current(connection) == _heads():
                return  # already current: nothing to run
            config = _config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def is_current(url: str) -> bool:
    """Whether the database is at the newest revision that this code knows."""
    engine = make_sync_engine(url)
    try:
        with engine.connect() as connection:
            return _current(connection) == _heads()
    finally:
        engine.dispose()
