"""Schema migrations with Alembic, run from code (start-up, CLI, tests).

Alembic is imported when a migration or a check runs, not with this module: the
hub's application imports it, and a process that never migrates (a production
hub that only checks, most CLI commands) need not load Alembic, Mako and Pygments.
The newest revisions are read from the migration scripts once per process (loading
them runs every script): a process that starts many hubs (tests, the demo) finds each
database current with one query instead of ~5 ms of Alembic.

Migrations of one database run one at a time: two ``onceonly migrate`` (or hubs that
migrate at start) on a fresh database would otherwise both find no schema and both
create it, and the second would fail. The check and the upgrade are one transaction
that first takes, on PostgreSQL, a transaction-level advisory lock
(:data:`MIGRATION_LOCK`), and on SQLite the database's write lock (BEGIN IMMEDIATE,
waiting at most SQLite's busy timeout): the second waits for the first to commit, then
finds the database current and does nothing.
"""

import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from onceonly.hub.db import MIGRATIONS_DIR, WRITE_OPTION, make_sync_engine

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger("onceonly.migrate")

MIGRATION_LOCK = int.from_bytes(b"onceonly", "big")
"""The PostgreSQL advisory lock key held while a migration runs (a fixed bigint, the
project's name in ASCII), in the database being migrated."""


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


@functools.cache
def _known() -> frozenset[str]:
    """Every revision that this code's migration scripts hold."""
    from alembic.script import ScriptDirectory

    return frozenset(
        script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()
    )


class NewerDatabase(RuntimeError):
    """The database is at a revision this code does not know: a newer version of
    onceonly migrated it. Nothing migrates it back; the code is upgraded instead."""

    def __init__(self, revisions: frozenset[str]) -> None:
        super().__init__(
            f"the database is at revision {_named(revisions)}, newer than this version of"
            " onceonly knows: upgrade onceonly to the version that migrated it"
        )


def _refuse_newer(revisions: frozenset[str]) -> None:
    unknown = revisions - _known()
    if unknown:
        raise NewerDatabase(unknown)


def _current(connection: sa.Connection) -> frozenset[str]:
    from alembic.runtime.migration import MigrationContext

    return frozenset(MigrationContext.configure(connection).get_current_heads())


@dataclass(frozen=True)
class Migrated:
    """What :func:`upgrade` found and left: the revisions before and after (empty
    before: a database with no schema yet). Equal when it had nothing to run."""

    before: frozenset[str]
    after: frozenset[str]

    def __str__(self) -> str:
        """``migrated from <rev or "empty"> to <rev>``, or ``already at <rev>``."""
        if self.before == self.after:
            return f"already at {_named(self.after)}"
        return f"migrated from {_named(self.before)} to {_named(self.after)}"


def _named(revisions: frozenset[str]) -> str:
    return ", ".join(sorted(revisions)) or "empty"


def upgrade(url: str, revision: str = "heads") -> Migrated:
    from alembic import command

    engine = make_sync_engine(url)
    try:
        # on SQLite, the write option makes the transaction BEGIN IMMEDIATE (onceonly.hub.db)
        with engine.connect().execution_options(**{WRITE_OPTION: True}) as connection:
            with connection.begin():
                _wait_for_other_migrations(connection)
                before = _current(connection)
                _refuse_newer(before)
                if revision == "heads" and before == _heads():
                    return Migrated(before, before)  # already current: nothing to run
                config = _config()
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                return Migrated(before, _current(connection))
    finally:
        engine.dispose()


def _wait_for_other_migrations(connection: sa.Connection) -> None:
    """On PostgreSQL, take :data:`MIGRATION_LOCK` until the transaction ends, waiting
    (and saying so) while another migration holds it. On SQLite, BEGIN IMMEDIATE has
    already waited for the write lock."""
    if connection.dialect.name != "postgresql":
        return
    key = {"key": MIGRATION_LOCK}
    if connection.execute(sa.text("SELECT pg_try_advisory_xact_lock(:key)"), key).scalar():
        return
    log.warning("another migration of this database is running: waiting for it to end")
    connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), key)


def is_current(url: str) -> bool:
    """Whether the database is at the newest revision that this code knows;
    :class:`NewerDatabase` when it is at one this code does not know."""
    engine = make_sync_engine(url)
    try:
        with engine.connect() as connection:
            current = _current(connection)
    finally:
        engine.dispose()
    _refuse_newer(current)
    return current == _heads()
