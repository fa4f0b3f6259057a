"""Database wiring: one async engine per process, one session per request.

The same code runs on SQLite (the embedded default) and PostgreSQL (production).
Services never commit; the request's session dependency does, once, at the end.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def async_url(url: str) -> str:
    """The async driver for a plain URL: ``sqlite+aiosqlite`` or ``postgresql+psycopg``."""
    parsed = make_url(url)
    driver = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}.get(
        parsed.get_backend_name()
    )
    if driver is None:
        raise ValueError(
            f"unsupported database {parsed.get_backend_name()!r}: use SQLite or PostgreSQL"
        )
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    """The sync driver for a plain URL (used by Alembic and the CLI)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    driver = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}.get(backend)
    if driver is None:
        raise ValueError(f"unsupported database {backend!r}: use SQLite or PostgreSQL")
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


WRITE_OPTION = "onceonly_write"


def _tune_sqlite(dbapi_connection: object, _record: object) -> None:
    # WAL lets readers proceed during the audit writer's commits; foreign keys are
    # off by default in SQLite; busy_timeout waits for a lock instead of failing.
    # The driver must not emit BEGIN itself: _begin_sqlite chooses which BEGIN.
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    for pragma in (
        "journal_mode=WAL",
        "synchronous=FULL",
        "foreign_keys=ON",
        "busy_timeout=10000",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _begin_sqlite(conn: sa.Connection) -> None:
    """A transaction that will write takes SQLite's write lock at BEGIN (IMMEDIATE).

    A deferred transaction that reads and then writes fails at once with "database
    is locked" if another connection committed in between (WAL snapshots cannot be
    upgraded); taking the lock first makes writers queue instead.
    """
    immediate = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str) -> AsyncEngine:
    if make_url(url).get_backend_name() == "sqlite":
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(async_url(url), hide_parameters=True)
        event.listen(engine.sync_engine, "connect", _tune_sqlite)
        event.listen(engine.sync_engine, "begin", _begin_sqlite)
        return engine
    return create_async_engine(
        async_url(url),
        pool_size=10,
        max_overflow=10,
        pool_pre_ping=True,
        hide_parameters=True,  # an error message must not carry a subject or a token hash
    )


def make_sync_engine(url: str) -> sa.Engine:
    engine = sa.create_engine(sync_url(url), hide_parameters=True)
    if make_url(url).get_backend_name() == "sqlite":
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        event.listen(engine, "connect", _tune_sqlite)
    return engine


def probe_engine(url: str, *, connect_timeout: int) -> sa.Engine:
    """A sync engine to look at a database from a command (is it there, what does it
    hold): no SQLite tuning, no folder created for a missing SQLite file, and a bound
    on how long PostgreSQL may take to answer."""
    options = (
        {} if make_url(url).get_backend_name() == "sqlite" else {"connect_timeout": connect_timeout}
    )
    return sa.create_engine(sync_url(url), connect_args=options, hide_parameters=True)


def driver_message(error: Exception) -> str:
    """The database driver's first line about ``error``, without SQLAlchemy's wrapping
    (libpq never quotes a password; callers blank what the URL itself holds)."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def write_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction that will write (on SQLite: BEGIN IMMEDIATE)."""
    async with engine.connect() as conn:
        await conn.execution_options(**{WRITE_OPTION: True})
        async with conn.begin():
            yield conn
