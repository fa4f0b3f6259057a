"""Database wiring: one async engine per process, one session per request.

The same code runs on SQLite (the embedded default) and PostgreSQL (production).
Services never commit; the request's session dependency does, once, at the end.
"""

import contextlib
import fcntl
import functools
import logging
import os
import re
import select
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from psycopg.pq import Conninfo, ConnStatus, TransactionStatus
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import ExecuteStyle
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

T = TypeVar("T")

log = logging.getLogger("onceonly.db")


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
BUSY_TIMEOUT_MS = 10_000  # how long a SQLite writer waits for the lock before it fails


SECURE_DELETE = "secure_delete=ON"
"""What SQLite frees (a deleted row, an erased raw subject, a page) is overwritten with
zeros, not left in the file's free space (decision 0070; every connection of the hub's
to a SQLite file sets it, onceonly.hub.loop_writes too)."""


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
        f"busy_timeout={BUSY_TIMEOUT_MS}",
        SECURE_DELETE,
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


# The pool's rollback when a connection comes back, skipped when the transaction is known
# to be over: SQLAlchemy ended it itself, or write_in_one_call did (it marks the
# connection). On aiosqlite every rollback is a trip to the connection's thread and back,
# one more per group commit than the commit itself (pool_reset_on_return=None hands the
# reset to this listener; the pool still calls it on every return).
_ENDED = "onceonly_transaction_ended"


def _reset_sqlite(dbapi_connection: Any, record: Any, state: Any) -> None:
    ended = record is not None and record.info.pop(_ENDED, False)
    if ended or state.transaction_was_reset or not state.asyncio_safe:
        return
    dbapi_connection.rollback()


# Connections kept open per process. A request holds one only for its short reads,
# but the server runs many requests at once: with fewer kept than run, every request
# past the pool's size opens and closes a connection of its own (on SQLite a new
# driver thread and five PRAGMAs, on PostgreSQL a login), which cost more CPU than
# the exchange's own reads.
POOL_SIZE, MAX_OVERFLOW = 20, 20
# The group-commit writers' own pool (the audit writer's and the single-use register's;
# decision 0056). A request may hold a pooled connection while it waits for a group
# commit (the token endpoint reads the client, then spends the assertion's jti): were
# the writers to take their connections from the same pool, forty such requests would
# hold all of it while the commit they wait for waits for a connection, until the pool's
# timeout failed them all, and every other request with them. Each writer commits one
# batch at a time, its probe in the same task: two connections at most; the overflow
# is a margin, never reached today.
WRITERS_POOL_SIZE, WRITERS_MAX_OVERFLOW = 2, 2
# How long a request waits for a pooled connection when all of them are taken
# (SQLAlchemy's default: 30 s). Longer than the SDK's own timeout (10 s), the 503
# would reach a client that has left, and the hub would still do the work after it.
POOL_TIMEOUT = 5.0

# libpq bounds nothing by default: a connection to a host that answers nothing waits
# for the kernel (minutes), a query on a connection whose host vanished waits for TCP's
# retransmissions to give up (about 15 minutes), holding its pool slot and its request.
# These defaults bound both; the operator's database URL overrides each (its query
# string holds libpq parameters, ``?connect_timeout=10``), and so does libpq's
# environment variable where one exists (``PGCONNECT_TIMEOUT``). Decision 0052.
POSTGRES_TIMEOUTS: Mapping[str, str] = {
    "connect_timeout": "5",  # seconds for the whole connection and login (libpq: >= 2)
    "keepalives": "1",
    "keepalives_idle": "10",  # seconds idle before the first probe,
    "keepalives_interval": "5",  # then one every 5 s,
    "keepalives_count": "3",  # and the connection is dead after 3 unanswered: 25 s
    # milliseconds that sent data (a probe, a statement) may stay unacknowledged before
    # the kernel closes the connection (Linux; the same 25 s; elsewhere libpq ignores it)
    "tcp_user_timeout": "25000",
}

# libpq's environment variable for each parameter that has one (PGCONNECT_TIMEOUT)
_LIBPQ_ENVIRONMENT = {
    option.keyword.decode(): option.envvar.decode()
    for option in Conninfo.get_defaults()
    if option.envvar
}


def postgres_connect_args(
    url: str, defaults: Mapping[str, str] = POSTGRES_TIMEOUTS
) -> dict[str, str]:
    """The ``defaults`` (libpq parameters) that ``url``'s query does not set, nor libpq's
    environment variable: what goes to the driver as ``connect_args``, which SQLAlchemy
    lets win over the URL's query, so nothing the operator wrote is in it."""
    given = make_url(url).query
    return {
        name: value
        for name, value in defaults.items()
        if name not in given and not os.environ.get(_LIBPQ_ENVIRONMENT.get(name) or "")
    }


def _make_file_for(url: str) -> None:
    """The folder of a SQLite database file and the file, each made if missing, for the
    hub's user alone: the folder 0700, the file 0600 (empty: SQLite makes it a database),
    whatever the process's umask. SQLite gives the file's mode to the ``-wal`` and
    ``-shm`` files it makes beside it, and the database holds raw subjects of pending
    events and the whole audit log's content. A folder or a file that is already there
    is left as it is (the operator's). Not for a database in memory, nor for a
    ``file:`` URI (``?uri=true``), which SQLite resolves itself: its text is no path,
    and would leave a ``file:`` folder in the working directory."""
    parsed = make_url(url)
    path = parsed.database
    if not path or path == ":memory:" or parsed.query.get("uri") in ("true", "1"):
        return
    _private_folders(Path(path).parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))


def _private_folders(folder: Path) -> None:
    """``folder`` and each missing folder above it, made 0700 (``mkdir -p`` gives the
    missing parents the umask's mode: 0755 under 022, a review found); those there are
    left as they are."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            made.mkdir(mode=0o700)
            os.chmod(made, 0o700)  # whatever the umask


def make_engine(
    url: str, *, pool_size: int | None = None, max_overflow: int | None = None
) -> AsyncEngine:
    """The engine for ``url``; its pool keeps ``pool_size`` connections (POOL_SIZE
    unless given) and opens up to ``max_overflow`` more (MAX_OVERFLOW)."""
    pool_size = POOL_SIZE if pool_size is None else pool_size
    max_overflow = MAX_OVERFLOW if max_overflow is None else max_overflow
    if make_url(url).get_backend_name() == "sqlite":
        path = make_url(url).database
        _make_file_for(url)
        on_file = bool(path) and path != ":memory:"  # in memory: one static connection
        sized = {"pool_size": pool_size, "max_overflow": max_overflow} if on_file else {}
        engine = create_async_engine(
            async_url(url), hide_parameters=True, pool_reset_on_return=None, **sized
        )
        event.listen(engine.sync_engine, "connect", _tune_sqlite)
        event.listen(engine.sync_engine, "begin", _begin_sqlite)
        event.listen(engine.sync_engine, "reset", _reset_sqlite)
        return engine
    engine = create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=POOL_TIMEOUT,
        connect_args=postgres_connect_args(url),
        hide_parameters=True,  # an error message must not carry a subject or a token hash
    )
    event.listen(engine.sync_engine, "checkin", _note_return)
    event.listen(engine.sync_engine, "checkout", _alive_or_replaced(engine.dialect))
    for name, listener in _first_statement_listeners(engine.dialect).items():
        event.listen(engine.sync_engine, name, listener)
    return engine


def writers_engine(engine: AsyncEngine, url: str) -> AsyncEngine:
    """The group-commit writers' engine beside ``engine`` (``url``'s): a pool of their
    own (see WRITERS_POOL_SIZE above), or ``engine`` itself for an SQLite database in
    memory, which another engine would not share."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and _in_memory(parsed):
        return engine
    return make_engine(url, pool_size=WRITERS_POOL_SIZE, max_overflow=WRITERS_MAX_OVERFLOW)


def _in_memory(url: sa.URL) -> bool:
    """An SQLite database that lives in its connections: ``:memory:`` or no name, a
    ``file::memory:`` URI, or ``mode=memory``."""
    database = url.database or ""
    return (
        database in ("", ":memory:")
        or database.startswith("file::memory:")
        or url.query.get("mode") == "memory"
    )


# --- a pooled PostgreSQL connection is checked before it is handed out ------------------
#
# SQLAlchemy's pool_pre_ping sends a round trip on every checkout: 110 us of the hub's CPU
# and 35 us of the server's each time (measured in-process), on a path that checks out a
# connection per request and per group commit. A connection the server closed (a restart,
# pg_terminate_backend, idle_session_timeout) says so at once: its socket is readable,
# with the server's last message or the end of the stream, while an idle connection's
# socket holds nothing. So a connection is pinged only when its socket has something to
# read, or when it has been idle for PING_AFTER_IDLE seconds or more (time enough for a
# middlebox to have dropped it without a word); else it is handed out as it is. A failed
# ping replaces it with a new connection, as pre-ping does (decision 0040).

PING_AFTER_IDLE = 1.0
_RETURNED = "onceonly_returned"  # when the connection went back to the pool (monotonic)
_UNPINGED = "onceonly_unpinged"  # handed out without a ping, nothing sent on it since
# (in record_info, which the adhoc connection SQLAlchemy first connects with has too)


def _note_return(_dbapi_connection: object, record: Any) -> None:
    if record is not None:
        record.info[_RETURNED] = time.monotonic()


def _alive_or_replaced(dialect: sa.Dialect) -> Callable[[Any, Any, Any], None]:
    def check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get(_RETURNED)  # info is emptied when it reconnects
        recent = returned is not None and time.monotonic() - returned < PING_AFTER_IDLE
        unpinged = recent and _quiet(record.driver_connection)
        record.record_info[_UNPINGED] = unpinged
        if returned is None or unpinged:  # new (connected just now), or handed out as it is
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:  # the pool invalidates it and connects afresh
            raise sa.exc.DisconnectionError("the pooled connection did not answer") from error

    return check


def _quiet(driver: Any) -> bool:
    """An idle psycopg connection with nothing to read: the server has not closed it."""
    try:
        if driver.pgconn.status != ConnStatus.OK:
            return False
        poller = select.poll()
        poller.register(driver.pgconn.socket, select.POLLIN)
        return not poller.poll(0)
    except Exception:  # closed under us: the ping will tell
        return False


# --- ... and replaced if its first statement finds it dead -------------------------------
#
# Quiet is not alive. When the server's host vanishes (a failover that moves its address
# to a standby), nothing reaches the hub's sockets: every pooled connection looks idle,
# and the first packet sent on one meets a reset. The statement that sent it is sent once
# more on a new connection when that is safe: the connection was handed out without a
# ping, this is the first thing sent on it (it holds no transaction: nothing of the
# caller's work was acknowledged, and a COMMIT cannot have been sent), not in autocommit
# (so the statement cannot have taken effect on its own), and the failure is a
# disconnect (an OperationalError on a connection psycopg now marks closed, SQLAlchemy's
# is_disconnect). The dead connection is invalidated and, as SQLAlchemy does on any
# disconnect, so is every pooled connection made before it (each is replaced at its next
# checkout); the new one is made for this retry, never pinged, never retried (decision
# 0047). Three ways reach the driver: SQLAlchemy's statements (its dialect's execute
# events below), OneCallRead's read and write_in_one_call's BEGIN.


def _unpinged(raw: Any) -> bool:
    """``raw`` (a pooled connection) was handed out without a ping and nothing was sent on
    it since: its first round trip may meet a dead connection, and may be tried again.
    True once a checkout (the mark is taken)."""
    if not raw.record_info.pop(_UNPINGED, False):
        return False
    driver = raw.driver_connection
    idle = driver.pgconn.transaction_status == TransactionStatus.IDLE
    return bool(idle and not driver.autocommit)


def _died(dialect: sa.Dialect, raw: Any, error: BaseException) -> bool:
    """``error`` says the connection is gone (not the statement refused)."""
    return isinstance(error, dialect.loaded_dbapi.OperationalError) and bool(
        dialect.is_disconnect(error, raw.dbapi_connection, None)
    )


def _replace(connection: sa.Connection, error: Exception) -> None:
    """Put a new DBAPI connection under ``connection``'s pooled one in place of the dead
    one, as the pool does after a failed ping at checkout (SQLAlchemy's
    ``_ConnectionFairy._checkout``), with the settings psycopg shapes its BEGIN with.
    If no new connection can be made, ``error`` is raised and the caller's disconnect
    handling invalidates the pooled connection as for any disconnect."""
    fairy: Any = connection.connection
    record = fairy._connection_record
    old = fairy.driver_connection
    log.warning(
        "a pooled database connection was dead at its first statement (%s): sent again on"
        " a new connection",
        driver_message(error),
    )
    record.invalidate(error)
    connection.engine.pool._invalidate(fairy, error, _checkin=False)
    try:
        fresh = record.get_connection()
    except Exception as failure:
        error.add_note(f"a new connection could not be made either: {driver_message(failure)}")
        raise error from None
    fairy.dbapi_connection = fresh
    if old.isolation_level is not None:
        fresh.set_isolation_level(old.isolation_level)
    if old.read_only is not None:
        fresh.set_read_only(old.read_only)
    if old.deferrable is not None:
        fresh.set_deferrable(old.deferrable)


def _first_statement_listeners(dialect: sa.Dialect) -> dict[str, Callable[..., bool]]:
    """The dialect's execute events: a statement that is the first on an unpinged
    connection is run here, and once more on a new connection if it found it dead; any
    other is left to SQLAlchemy (False). Not a batched INSERT (insertmanyvalues), whose
    later batches and results keep to the cursor it began with."""

    def first(context: Any) -> sa.Connection | None:
        connection: sa.Connection = context.root_connection
        if not _unpinged(connection.connection):
            return None
        if context.execute_style is ExecuteStyle.INSERTMANYVALUES:
            return None
        return connection

    def retried(
        connection: sa.Connection, context: Any, cursor: Any, run: Callable[[Any], None]
    ) -> bool:
        try:
            run(cursor)
        except Exception as error:
            if not _died(dialect, connection.connection, error):
                raise
            _replace(connection, error)
            with contextlib.suppress(Exception):
                cursor.close()
            context.cursor = context.create_cursor()  # what SQLAlchemy reads the rows from
            run(context.cursor)
        return True

    def do_execute(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        connection = first(context)
        return connection is not None and retried(
            connection,
            context,
            cursor,
            lambda c: dialect.do_execute(c, statement, parameters, context),
        )

    def do_executemany(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        connection = first(context)
        return connection is not None and retried(
            connection,
            context,
            cursor,
            lambda c: dialect.do_executemany(c, statement, parameters, context),
        )

    def do_execute_no_params(cursor: Any, statement: str, context: Any) -> bool:
        connection = first(context)
        return connection is not None and retried(
            connection,
            context,
            cursor,
            lambda c: dialect.do_execute_no_params(c, statement, context),
        )

    return {
        "do_execute": do_execute,
        "do_executemany": do_executemany,
        "do_execute_no_params": do_execute_no_params,
    }


async def _once_more_if_dead(
    conn: AsyncConnection, raw: Any, attempt: Callable[[Any], Awaitable[T]], *, retry: bool
) -> T:
    """``attempt(driver)``; if ``retry`` and it found the connection dead, again on a new
    connection (see above)."""
    try:
        return await attempt(raw.driver_connection)
    except Exception as error:
        if not retry or not _died(conn.dialect, raw, error):
            raise
        await conn.run_sync(_replace, error)
    return await attempt(raw.driver_connection)


def make_sync_engine(url: str) -> sa.Engine:
    if make_url(url).get_backend_name() != "sqlite":
        return sa.create_engine(
            sync_url(url), connect_args=postgres_connect_args(url), hide_parameters=True
        )
    _make_file_for(url)
    engine = sa.create_engine(sync_url(url), hide_parameters=True)
    event.listen(engine, "connect", _tune_sqlite)
    # _tune_sqlite stops the driver's own BEGIN: without this, engine.begin() on a
    # sync engine (migrations, commands) would commit statement by statement.
    event.listen(engine, "begin", _begin_sqlite)
    return engine


def probe_engine(url: str, *, connect_timeout: int, make_file: bool = False) -> sa.Engine:
    """A sync engine to look at a database from a command (is it there, what does it
    hold): no SQLite tuning, no folder created for a missing SQLite file unless
    ``make_file`` (a command that is about to fill it, ``onceonly migrate``: then made
    for the hub's user alone, as the engines make it, before SQLite would make it under
    the umask; OSError when it cannot be), and a bound on how long PostgreSQL may take
    to answer: ``connect_timeout`` and the engines' keepalives, each unless the URL
    sets it."""
    if make_url(url).get_backend_name() == "sqlite":
        if make_file:
            _make_file_for(url)
        return sa.create_engine(sync_url(url), hide_parameters=True)
    defaults = {**POSTGRES_TIMEOUTS, "connect_timeout": str(connect_timeout)}
    options = postgres_connect_args(url, defaults)
    return sa.create_engine(sync_url(url), connect_args=options, hide_parameters=True)


def driver_message(error: Exception) -> str:
    """The database driver's first line about ``error``, without SQLAlchemy's wrapping
    (libpq never quotes a password; callers blank what the URL itself holds)."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


def driver_code(cause: BaseException | None) -> str:
    """A driver error's code for a log line, never its text (which may quote a row):
    sqlite3's error name, PostgreSQL's SQLSTATE, or the driver's class."""
    if isinstance(cause, sqlite3.Error) and getattr(cause, "sqlite_errorname", None):
        return str(cause.sqlite_errorname)
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate:
        return f"SQLSTATE {sqlstate}"
    kind = type(cause)
    return f"{kind.__module__.split('.')[0]} {kind.__name__}"


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def write_connection(
    engine: AsyncEngine, *, durable: bool = True
) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction that will write (on SQLite: BEGIN IMMEDIATE).

    ``durable=False``: its commit does not wait for its own flush to disk, as
    :func:`write_in_one_call`'s (decision 0043): for a write whose effect is answered
    only after a flushed commit of the same store, which flushes it too (decision 0079).
    """
    async with engine.connect() as conn:
        await conn.execution_options(**{WRITE_OPTION: True})
        sqlite = conn.dialect.name == "sqlite"
        try:
            if sqlite and not durable:  # outside a transaction: SQLite refuses it inside one
                await _sqlite_pragma(conn, "synchronous=NORMAL")  # in the try: a cancelled
                # await still runs on the driver's thread, and must be set back (a review)
            async with conn.begin():
                if not durable and not sqlite:
                    await conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                yield conn
        finally:
            if sqlite and not durable:
                await _sqlite_durable_again(conn)


async def _sqlite_pragma(conn: AsyncConnection, pragma: str) -> None:
    """A PRAGMA on the sqlite3 connection itself, outside SQLAlchemy's transaction."""
    raw = await conn.get_raw_connection()
    cursor = await raw.driver_connection.execute(f"PRAGMA {pragma}")  # type: ignore[union-attr]
    await cursor.close()


async def _sqlite_durable_again(conn: AsyncConnection) -> None:
    """``synchronous=FULL`` again before the connection goes back to the pool; a
    connection that cannot be set back is not handed out again."""
    try:
        await _sqlite_pragma(conn, "synchronous=FULL")
    except BaseException:
        with contextlib.suppress(Exception):
            await conn.invalidate()
        raise


class OneCallRead:
    """A Core SELECT of exactly one row that the hot path runs on every request, handed
    to the driver as one call.

    On SQLite, SQLAlchemy's aiosqlite adapter makes each statement four calls to the
    driver's thread (cursor, execute, fetch, close), plus three for the BEGIN and one
    for the ROLLBACK, and each call is a thread hand-off that costs more CPU than the
    read itself; here the statement is one call, outside a transaction (a single SELECT
    reads one snapshot all the same). On PostgreSQL too, when the connection holds no
    transaction: psycopg would otherwise send a BEGIN before it and the pool a ROLLBACK
    after it (two more round trips), and psycopg forgets every statement it prepared on
    a connection when that connection rolls back, so that with one such read a request
    nothing the hub sends was ever prepared (each statement parsed and planned anew: the
    facts read's plan alone cost the server 0.35 ms). The statement is compiled once per
    dialect; values are bound and read back with the column types' own processors, so
    rows are what SQLAlchemy gives, and driver errors are wrapped as SQLAlchemy wraps
    them.
    """

    def __init__(self, statement: sa.Select[Any]) -> None:
        self._statement = statement
        self._forms: dict[str, _DriverForm] = {}  # by dialect name, compiled at first use

    async def one(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Mapping[str, Any]:
        form = self._forms.get(conn.dialect.name)
        if form is None:
            form = self._forms[conn.dialect.name] = _DriverForm(self._statement, conn.dialect)
        raw = await conn.get_raw_connection()
        errors = conn.dialect.loaded_dbapi.Error
        retry = conn.dialect.name == "postgresql" and _unpinged(raw)
        bound = form.bind(params)
        try:
            rows = await _once_more_if_dead(
                conn, raw, lambda driver: _fetch_all(driver, form.sql, bound), retry=retry
            )
        except BaseException as error:
            if conn.dialect.name == "postgresql":  # it may be left in autocommit
                with contextlib.suppress(Exception):
                    await conn.invalidate()
            if isinstance(error, errors):
                raise sa.exc.DBAPIError.instance(
                    form.sql, None, error, errors, hide_parameters=True
                ) from error
            raise
        if len(rows) != 1:
            raise sa.exc.NoResultFound if not rows else sa.exc.MultipleResultsFound
        return form.read(rows[0])


async def _fetch_all(driver: Any, sql: str, params: Any) -> list[Any]:
    """One call to the driver: aiosqlite's execute_fetchall, or psycopg's execute (in
    autocommit when no transaction is open: see OneCallRead)."""
    if hasattr(driver, "execute_fetchall"):
        return list(await driver.execute_fetchall(sql, params))
    if driver.autocommit or driver.info.transaction_status != TransactionStatus.IDLE:
        return await _psycopg_rows(driver, sql, params)
    await driver.set_autocommit(True)
    rows = await _psycopg_rows(driver, sql, params)
    # Not in a finally: after a failure the caller invalidates the connection, which
    # must never go back to the pool in autocommit (a session's writes would commit
    # one by one).
    await driver.set_autocommit(False)
    return rows


async def _psycopg_rows(driver: Any, sql: str, params: Any) -> list[Any]:
    cursor = await driver.execute(sql, params)
    return list(await cursor.fetchall())


class _DriverForm:
    """A statement compiled for one dialect, with its parameters' and columns' processors."""

    def __init__(self, statement: sa.Select[Any], dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self._compiled = compiled
        self._order = compiled.positiontup  # positional paramstyles (SQLite); else named
        self._binds = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        }
        self._names = list(statement.selected_columns.keys())
        self._readers = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.selected_columns
        ]

    def bind(self, params: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        values = self._compiled.construct_params(dict(params), escape_names=False)
        if self._order is None:
            return {name: self._bound(name, value) for name, value in values.items()}
        return tuple(self._bound(name, values[name]) for name in self._order)

    def _bound(self, name: str, value: Any) -> Any:
        process = self._binds[name]
        return value if process is None else process(value)

    def read(self, row: Sequence[Any]) -> dict[str, Any]:
        return {
            name: value if read is None else read(value)
            for name, read, value in zip(self._names, self._readers, row, strict=True)
        }


# --- a write transaction as one call to the driver -------------------------------------
#
# The group-commit writers (the audit log, the single-use register) write a batch per
# transaction. Through SQLAlchemy's cursor protocol a batch is about 18 (audit) or 8
# (register) calls to aiosqlite's thread, each a thread hand-off that costs more CPU
# than the statement, and each row is bound by SQLAlchemy in Python. Here the whole
# transaction is one call: on SQLite a function run on the driver's thread between
# BEGIN IMMEDIATE and COMMIT; on PostgreSQL a coroutine on the psycopg connection, in
# a transaction begun just before it (_begin), committed in the same pipeline as its
# last statements. Driver errors are wrapped as SQLAlchemy wraps them (an
# IntegrityError stays one), and a transaction that fails is rolled back before the
# error is raised; the pool's reset on return rolls back again, a no-op then.

SqliteWork = Callable[[sqlite3.Connection], T]
PostgresWork = Callable[[Any], Awaitable[T]]


async def write_in_one_call(
    engine: AsyncEngine,
    *,
    sqlite_work: "SqliteWork[T]",
    postgres_work: "PostgresWork[T] | None" = None,
    durable: bool = True,
) -> T:
    """Run one write transaction as one call to the driver (see above): ``sqlite_work``
    with the sqlite3 connection on aiosqlite's thread, or ``postgres_work`` with the
    psycopg connection in pipeline mode (it may commit itself, to read results after
    the COMMIT). Either commits before this returns, or raises a
    ``sqlalchemy.exc.DBAPIError`` (or what the work raised) and leaves nothing.

    ``durable=False``: the commit does not wait for its own flush to disk (SQLite
    ``synchronous=NORMAL`` for this transaction, PostgreSQL ``synchronous_commit =
    off``). It is visible to every reader at once and survives the process ending; only
    a crash of the machine (or of the PostgreSQL server) before the next durable commit
    can lose it. A durable commit
    made after it flushes it too: both stores flush their log in order. For writes whose
    effect is answered only after such a commit (docs/decisions/0043).

    Without ``postgres_work`` it is for SQLite only (a caller whose PostgreSQL write goes
    statement by statement): on PostgreSQL it raises ValueError, before connecting."""
    if postgres_work is None and engine.dialect.name != "sqlite":
        raise ValueError("write_in_one_call on PostgreSQL needs postgres_work")
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        errors = conn.dialect.loaded_dbapi.Error
        try:
            if conn.dialect.name == "sqlite":
                result = await _sqlite_call(driver, sqlite_work, durable)
                raw.info[_ENDED] = True  # committed: no rollback when it goes back
                return result
            await _once_more_if_dead(conn, raw, _begin, retry=_unpinged(raw))
            assert postgres_work is not None  # checked above
            return await _postgres_call(raw.driver_connection, postgres_work, durable)
        except errors as error:
            raise sa.exc.DBAPIError.instance(
                None, None, error, errors, hide_parameters=True
            ) from error
        except BaseException:
            # Not an SQL error (aiosqlite's "Connection closed", a cancelled pipeline):
            # the pool must not hand this connection out again. SQLAlchemy's own path
            # invalidates such a connection; this one bypasses that path.
            with contextlib.suppress(Exception):
                await conn.invalidate()
            raise


async def _sqlite_call(driver: Any, work: "SqliteWork[T]", durable: bool) -> T:
    # aiosqlite runs any function on its thread with the private Connection._execute
    # (its public methods are each one such call); one call is the point here. The
    # versions pyproject allows have it; tests/hub/test_db_one_call.py names it.
    result: T = await driver._execute(_in_sqlite_transaction, driver, work, durable)
    return result


def _in_sqlite_transaction(driver: Any, work: "SqliteWork[T]", durable: bool) -> T:
    db: sqlite3.Connection = driver._conn
    gate = _write_gate(driver, db)
    started = time.monotonic()
    held = gate.enter(BUSY_TIMEOUT_MS / 1000)
    waited_ms = int((time.monotonic() - started) * 1000)
    try:
        if waited_ms:  # the gate's wait and SQLite's together stay within the busy timeout
            db.execute(f"PRAGMA busy_timeout={max(1, BUSY_TIMEOUT_MS - waited_ms)}")
        if not durable:  # the connection's setting, for this transaction only (WAL: see
            db.execute("PRAGMA synchronous=NORMAL")  # decision 0043)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = work(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        finally:
            if not durable:
                db.execute("PRAGMA synchronous=FULL")
            if waited_ms:
                db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    finally:
        if held:
            gate.leave()
    return result


# --- SQLite's write lock, queued for instead of slept for -------------------------------
#
# SQLite lets one connection write at a time. A connection that finds the lock taken
# calls its busy handler, which (with busy_timeout) sleeps 1, 2, 5, 10, 15, ... ms
# between tries, however soon the lock is free. The audit log's and the single-use
# register's group commits write from different pooled connections, often at the same
# moment, and each commit holds the lock for about as long as its fsync: a writer that
# meets the other's commit sleeps a whole millisecond or more. One run of the exchange
# bench (about a minute of it through the hub) counted some 1,550 such sleeps in the
# hub's driver threads (perf on clock_nanosleep), and the latency the hub adds showed it.
#
# So the transactions of write_in_one_call queue in front of SQLite's lock: a thread lock
# among this process's connections, which wakes the next writer the moment the holder
# lets go, and flock(2) on a file beside the database (<database>-writers) among the
# processes that share it (``serve --workers N``), tried without blocking and again
# every 0.1 to 1 ms. A writer that does not pass here (a request's session, the
# checkpointer, another program) still meets the busy handler, as before, and so do these
# writers when it holds the lock: the gate orders them; SQLite's lock is still what keeps
# the file consistent. Nobody waits longer than before: the wait at the gate counts
# against the busy timeout, and a writer that could not pass in that time tries SQLite's
# lock without it (a holder stopped between the two locks does not stop the others). If
# the file cannot be made or locked (a read-only directory, a file system without
# flock), the gate keeps this process's writers in order only, and says so once.

WRITERS_SUFFIX = "-writers"
_POLL_FIRST, _POLL_MOST = 0.0001, 0.001  # seconds between tries of another process's flock


class WriteGate:
    """This process's queue for one database file's write lock (see above)."""

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._path = path + WRITERS_SUFFIX
        self._fd = _open_beside(path, self._path)

    @property
    def owned(self) -> bool:
        """False in a child forked after the gate was made: its file description (and
        so its flock) is the parent's, which would not keep the two apart."""
        return self._pid == os.getpid()

    def enter(self, budget: float) -> bool:
        """Wait up to ``budget`` seconds for the gate: True if held (call :meth:`leave`)."""
        deadline = time.monotonic() + budget
        if not self._lock.acquire(timeout=budget):
            return False
        try:
            if self._fd is None or self._flock(self._fd, deadline):
                return True
        except BaseException:
            self._lock.release()
            raise
        self._lock.release()
        return False

    def try_enter(self) -> bool:
        """The gate if it is free now, without waiting (for the event loop's own writes,
        ``onceonly.hub.loop_writes``): True if held (call :meth:`leave`)."""
        if not self._lock.acquire(blocking=False):
            return False
        if self._fd is None:
            return True
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by another process, or no flock here (enter() says so)
            self._lock.release()
            return False
        return True

    def leave(self) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()

    def _flock(self, fd: int, deadline: float) -> bool:
        pause = _POLL_FIRST
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                time.sleep(min(pause, left))
                pause = min(2 * pause, _POLL_MOST)
            except OSError as error:  # no flock here: this process's order only
                log.warning(
                    "cannot lock %s (%s): several processes writing this database will"
                    " wait for each other in SQLite's busy handler",
                    self._path,
                    error.strerror,
                )
                os.close(fd)
                self._fd = None
                return True


class _NoGate:
    """A database in memory: no other connection can write it."""

    def enter(self, budget: float) -> bool:
        return False

    def leave(self) -> None:
        raise AssertionError("never held")


def _open_beside(database: str, path: str) -> int | None:
    """The gate's file, made with the database file's owner and mode (a hub started once
    as root must not leave a file its own user cannot open), or opened read-only where it
    cannot be written (flock needs no write access); None, said once, if neither."""
    try:
        owner = os.stat(database)
    except OSError:
        owner = None
    mode = 0o600 if owner is None else owner.st_mode & 0o666
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    except OSError:
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            log.warning(
                "cannot open %s (%s): several processes writing this database will wait"
                " for each other in SQLite's busy handler",
                path,
                error.strerror,
            )
            return None
    if owner is not None and os.geteuid() == 0:
        with contextlib.suppress(OSError):
            os.fchown(fd, owner.st_uid, owner.st_gid)
    return fd


_GATES: dict[str, WriteGate] = {}
_GATES_LOCK = threading.Lock()
_GATE_OF_DRIVER = "_onceonly_write_gate"
_NO_GATE = _NoGate()


def _write_gate(driver: Any, db: sqlite3.Connection) -> "WriteGate | _NoGate":
    """The gate of the file ``db`` writes to (looked up once per connection), or no gate
    for a database in memory."""
    gate = getattr(driver, _GATE_OF_DRIVER, None)
    if gate is None or (isinstance(gate, WriteGate) and not gate.owned):
        path = next((row[2] for row in db.execute("PRAGMA database_list") if row[1] == "main"), "")
        gate = _gate_for(str(Path(path).resolve())) if path else _NO_GATE
        setattr(driver, _GATE_OF_DRIVER, gate)
    return gate


def write_gate(path: str) -> WriteGate:
    """This process's gate for the SQLite database file at ``path``."""
    return _gate_for(str(Path(path).resolve()))


def _gate_for(path: str) -> WriteGate:
    with _GATES_LOCK:
        gate = _GATES.get(path)
        if gate is None or not gate.owned:
            gate = _GATES[path] = WriteGate(path)
        return gate


async def _begin(driver: Any) -> None:
    """psycopg's own start of a transaction (BEGIN, one round trip), sent before the work.
    In pipeline mode psycopg sends it with a sync of its own before the work's first
    statement, a round trip all the same; sent here, a failure of it is known to be the
    connection's first round trip, before anything of the work (see _once_more_if_dead).
    psycopg has no public call for it; tests/hub/test_db_failover.py names it."""
    async with driver.lock:
        await driver.wait(driver._start_query())


async def _postgres_call(driver: Any, work: "PostgresWork[T]", durable: bool) -> T:
    # In a pipeline, statements are queued and sent when a result is fetched or at the
    # commit: the work's reads cost a round trip each, its writes and the COMMIT one. A
    # work that reads what its last statement returns commits first (the results are
    # there after the commit), so that statement and the COMMIT travel together.
    try:
        async with driver.pipeline():
            if not durable:  # sent with the work's first statements, for this transaction
                await driver.execute("SET LOCAL synchronous_commit TO OFF", prepare=False)
            result = await work(driver)
            if driver.info.transaction_status != TransactionStatus.IDLE:
                await driver.commit()
    except BaseException:
        with contextlib.suppress(Exception):  # a broken connection: the pool discards it
            await driver.rollback()
        raise
    return result


class DriverInsert:
    """``INSERT INTO table (every column) VALUES (...)`` compiled once for a dialect, with
    positional parameters, and rows (tuples in the table's column order) bound as
    SQLAlchemy binds them: with the column types' processors (SQLite stores a datetime
    as SQLAlchemy's text form), bytes as they are (both drivers bind bytes as a blob)."""

    def __init__(self, table: sa.Table, dialect: sa.Dialect) -> None:
        style = "qmark" if dialect.name == "sqlite" else "format"
        positional = type(dialect)(paramstyle=style)  # type: ignore[call-arg]
        self.sql = str(sa.insert(table).compile(dialect=positional))
        columns = list(table.columns)
        processors = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
        self._processed = [
            (position, process)
            for position, (column, process) in enumerate(zip(columns, processors, strict=True))
            if process is not None and not isinstance(column.type, sa.LargeBinary)
        ]

    def bind(self, rows: Iterable[Sequence[Any]]) -> list[Sequence[Any]]:
        if not self._processed:
            return list(rows)
        bound: list[Sequence[Any]] = []
        for row in rows:
            values = list(row)
            for position, process in self._processed:
                values[position] = process(values[position])
            bound.append(values)
        return bound


# sqlite3's executemany steps each row with the GIL released and takes it back after:
# on a driver thread, while the event loop runs Python, each row can wait the GIL's
# switch interval (5 ms), all the while holding SQLite's write lock, which every other
# writer waits for. Measured with another thread running Python: 20 rows by executemany
# took up to 44 ms, as one VALUES list 0.1 ms at most. So rows go in as VALUES lists,
# one statement per power of two in their count (13 rows: 8, 4 and 1), which keeps the
# texts, and so the statements sqlite3 keeps prepared, to a few per table.

MOST_ROWS_AT_ONCE = 1024  # a power of two; fewer if the connection's parameter limit says so
_ONE_ROW = re.compile(r"\((?:\?, )*\?\)")


@functools.lru_cache(maxsize=256)
def in_values_lists(sql: str, count: int) -> str:
    """``sql``, a one-row ``INSERT ... VALUES (?, ...) [ON CONFLICT ...]``, for ``count``
    rows in one VALUES list. Its row must be bare placeholders and its tail hold none
    (a column with a SQL bind expression, ``lower(?)``, would not split): anything else
    is refused here, whatever the row count, not found wrong under load."""
    head, found, rest = sql.partition(" VALUES ")
    row, closed, tail = rest.partition(")")
    if not found or not closed or not _ONE_ROW.fullmatch(row + ")") or "?" in tail:
        raise ValueError(f"not a one-row INSERT of bare placeholders: {sql!r}")
    return f"{head} VALUES {', '.join([row + ')'] * count)}{tail}"


def insert_rows_now(db: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """``rows`` (bound values) by ``sql`` (one row's statement, see above) on a sqlite3
    connection, in the caller's transaction, a few statements whatever their number."""
    if not rows:
        return
    width = len(rows[0])
    allowed = db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // max(width, 1)
    most = min(MOST_ROWS_AT_ONCE, 1 << max(allowed, 1).bit_length() - 1)
    start = 0
    while start < len(rows):
        size = min(1 << (len(rows) - start).bit_length() - 1, most)
        chunk = rows[start : start + size]
        db.execute(in_values_lists(sql, size), [value for row in chunk for value in row])
        start += size


class UnnestInsert:
    """``INSERT INTO table (every column) SELECT * FROM unnest(one array per column)`` on
    PostgreSQL: any number of rows in one statement and one message, each column's values
    sent as one array (psycopg's executemany sends a statement per row, each a message
    to build and parse). Rows are tuples in the table's column order; a string column's
    array is cast to varchar without a length, so that an overlong value fails on insert
    as it does in a VALUES list (an explicit cast to varchar(n) would cut it)."""

    def __init__(self, table: sa.Table) -> None:
        dialect = postgresql_dialect()
        columns = list(table.columns)
        names = ", ".join(dialect.identifier_preparer.quote(column.name) for column in columns)
        arrays = ", ".join(f"%b::{_array_type(column.type, dialect)}" for column in columns)
        self.sql = f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({arrays})"
        self._width = len(columns)

    def params(self, rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
        if not rows:
            return [[] for _ in range(self._width)]
        return [list(values) for values in zip(*rows, strict=True)]


def postgresql_dialect() -> sa.Dialect:
    """The psycopg dialect, for compiling text outside a connection."""
    from sqlalchemy.dialects.postgresql import psycopg

    dialect: sa.Dialect = psycopg.dialect()  # type: ignore[no-untyped-call]
    return dialect


def _array_type(column_type: Any, dialect: sa.Dialect) -> str:
    if isinstance(getattr(column_type, "impl", column_type), sa.String):  # AutoString too
        return "varchar[]"
    return f"{column_type.compile(dialect=dialect)}[]"
