"""A database that is away is a 503 ``database-unavailable`` with ``Retry-After``, and one
warning without a traceback; a bug stays a 500 with its traceback (decision 0049).

The rule (``errors.database_away``) is checked on errors the real stores raise, and a
table of PostgreSQL's answers that a test cannot easily make a server give. On the wire,
a hub reaches PostgreSQL through a loopback proxy (tests/hub/pg_proxy.py) that resets
every connection and refuses new ones while the server is "away"."""

import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from fastapi import Depends, FastAPI, Request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from onceonly.adapters import DPoPKey
from onceonly.hub import db, errors
from onceonly.hub.audit.dependencies import audited
from onceonly.hub.runtime import hub_of

from tests.hub.captured_logs import records_of
from tests.hub.exchange_world import ADDRESS, PURPOSE, SUBJECT, World, access_token, exchange_world
from tests.hub.pg_proxy import ProxyThread, proxy_in_thread, through, upstream_of
from tests.hub_testing import (
    DATABASES,
    RunningHub,
    audit_entry_for,
    module_database,
    problem_type,
    running_hub,
)

DPOP = DPoPKey.generate()
_AWAY_ANSWER_SECONDS = 10  # the request's own failure and its audit entry's, both bounded


# --- the rule, on what the stores raise ------------------------------------------------


def _wrapped(cause: Exception) -> DBAPIError:
    """``cause`` as SQLAlchemy wraps a driver's error raised outside a statement."""
    return DBAPIError.instance(None, None, cause, psycopg.Error, hide_parameters=True)


@pytest.mark.parametrize(
    ("cause", "away"),
    [
        (psycopg.errors.lookup("57P03")(), True),  # cannot_connect_now: starting up
        (psycopg.errors.lookup("57P02")(), True),  # crash_shutdown
        (psycopg.errors.lookup("53300")(), True),  # too_many_connections
        (psycopg.errors.lookup("08006")(), True),  # connection_failure
        (psycopg.errors.ConnectionTimeout(), True),  # libpq's, no SQLSTATE
        (psycopg.errors.lookup("53100")(), False),  # disk_full: an operator's, not a wait
        (psycopg.errors.lookup("40001")(), False),  # serialization_failure
        (psycopg.errors.lookup("57014")(), False),  # query_canceled (a statement timeout)
        (psycopg.errors.PipelineAborted(), False),  # an earlier statement's failure
        (psycopg.errors.lookup("42P01")(), False),  # undefined_table
    ],
    ids=lambda value: (
        ("away" if value else "not-away")
        if isinstance(value, bool)
        else getattr(value, "sqlstate", None) or type(value).__name__
    ),
)
def test_postgresql_answers_that_say_the_server_is_away(cause: Exception, away: bool) -> None:
    assert (errors.database_away(_wrapped(cause)) is not None) is away


def test_a_bug_that_no_database_raised_is_not_the_database_away() -> None:
    assert errors.database_away(RuntimeError("a fault")) is None
    assert errors.database_away(sa.exc.InvalidRequestError("misuse")) is None


@pytest.fixture
async def sqlite_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 50)  # the hub's 10 s, shortened
    engine = db.make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    yield engine
    await engine.dispose()


@pytest.mark.anyio
async def test_sqlite_locked_past_its_busy_timeout_is_away_a_missing_table_is_not(
    sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    holder = sqlite3.connect(tmp_path / "hub.db", isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE notes (text TEXT)")
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DBAPIError) as locked:
            async with db.write_connection(sqlite_engine) as conn:
                await conn.execute(sa.text("INSERT INTO notes VALUES ('x')"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert errors.database_away(locked.value) == "the lock was not free in time (SQLITE_BUSY)"
    with pytest.raises(DBAPIError) as missing:
        async with sqlite_engine.connect() as conn:
            await conn.execute(sa.text("SELECT * FROM no_such_table"))
    assert errors.database_away(missing.value) is None


async def _raised(engine: AsyncEngine, statement: str = "SELECT 1") -> BaseException:
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(statement))
    except Exception as error:
        return error
    raise AssertionError("the statement did not fail")


@pytest.mark.anyio
@pytest.mark.postgres
async def test_postgresql_lost_refused_or_terminated_is_away_a_bad_statement_is_not(
    postgres_url: str,
) -> None:
    with proxy_in_thread(upstream_of(postgres_url)) as proxy:
        engine = db.make_engine(through(proxy.port, postgres_url))
        try:
            async with engine.connect() as conn:  # pinged at checkout: not sent again
                await conn.scalar(sa.text("SELECT 1"))
                proxy.away()
                with pytest.raises(DBAPIError) as lost:
                    await conn.scalar(sa.text("SELECT 2"))
            refused = await _raised(engine)
            proxy.back()
            bad = await _raised(engine, "SELECT * FROM no_such_table")
            async with engine.connect() as conn:
                pid = await conn.scalar(sa.text("SELECT pg_backend_pid()"))
                async with engine.connect() as other:
                    await other.execute(sa.text(f"SELECT pg_terminate_backend({pid})"))
                with pytest.raises(DBAPIError) as terminated:
                    await conn.scalar(sa.text("SELECT 3"))
        finally:
            await engine.dispose()
    assert errors.database_away(lost.value) == (
        "the connection was lost (psycopg OperationalError)"
    )
    assert errors.database_away(refused) == "no connection could be made (psycopg OperationalError)"
    assert errors.database_away(terminated.value) == "the connection was lost (SQLSTATE 57P01)"
    assert errors.database_away(bad) is None


@pytest.mark.anyio
@pytest.mark.postgres
async def test_no_pooled_connection_free_in_time_is_away(postgres_url: str) -> None:
    engine = create_async_engine(
        db.async_url(postgres_url), pool_size=1, max_overflow=0, pool_timeout=0.05
    )
    try:
        async with engine.connect():
            timed_out = await _raised(engine)
    finally:
        await engine.dispose()
    assert errors.database_away(timed_out) is not None


# --- a hub whose PostgreSQL goes away ---------------------------------------------------


@pytest.fixture
def hub_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The hub's records at INFO and above: caplog's handler on the "onceonly" logger
    (the hub's logging configuration may stop its propagation)."""
    with records_of(caplog, "onceonly", logging.INFO) as captured:
        yield captured


@pytest.fixture(scope="module", params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def away_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[World, ProxyThread]]:
    database_url = module_database(request, tmp_path_factory, catalogued=True)
    with proxy_in_thread(upstream_of(database_url)) as proxy:
        with exchange_world(
            database_url=through(proxy.port, database_url),
            tmp_path=tmp_path_factory.mktemp("world"),
            catalogued=True,
        ) as world:
            yield world, proxy


def _query(world: World, token: str) -> httpx.Response:
    url = f"{world.hub.url}/v1/items/{ADDRESS}/records/query"
    body = {"subject": SUBJECT, "purpose": PURPOSE}
    return httpx.post(url, json=body, headers=DPOP.headers("POST", url, token), timeout=30)


def _grants(hub: RunningHub) -> httpx.Response:
    headers = {"Authorization": f"Bearer {hub.keys.admin_token}"}
    return httpx.get(f"{hub.url}/v1/admin/grants", headers=headers, timeout=30)


def _answered_in_time(send: Any) -> httpx.Response:
    started = time.monotonic()
    answer: httpx.Response = send()
    assert time.monotonic() - started < _AWAY_ANSWER_SECONDS
    return answer


def _assert_database_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert problem_type(answer) == "database-unavailable"
    assert answer.headers["retry-after"] == str(errors.DATABASE_RETRY_AFTER)
    assert answer.json()["title"] == "Database unavailable"


def _warnings_of(log: pytest.LogCaptureFixture, answer: httpx.Response) -> list[logging.LogRecord]:
    request_id = answer.headers["x-request-id"]
    return [r for r in log.records if getattr(r, "request_id", None) == request_id]


def test_a_hub_whose_postgresql_is_away_answers_503_and_serves_again_once_it_is_back(
    away_world: tuple[World, ProxyThread], hub_log: pytest.LogCaptureFixture
) -> None:
    world, proxy = away_world
    token = access_token(world, DPOP)  # while the database answers
    proxy.away()
    try:
        query = _answered_in_time(lambda: _query(world, token))  # the fast path, audited
        grants = _answered_in_time(lambda: _grants(world.hub))  # a route, not audited
    finally:
        proxy.back()
    for answer in (query, grants):
        _assert_database_unavailable(answer)
        (line,) = [r for r in _warnings_of(hub_log, answer) if r.name == "onceonly.errors"]
        assert line.levelno == logging.WARNING
        assert line.exc_info is None  # no traceback
        message = line.getMessage()
        assert message.startswith("the database is unavailable: ")
        assert SUBJECT not in message
        assert "SELECT" not in message
    assert not [r for r in hub_log.records if r.name == "onceonly.errors" and r.levelno >= 40]

    again = _query(world, access_token(world, DPOP))
    assert again.status_code == 200, again.text
    assert _grants(world.hub).status_code == 200
    metrics = world.hub.metrics().text
    assert (
        'onceonly_http_requests_total{method="POST",route="/v1/items/{item_id}/records/query",'
        'status="503"}' in metrics
    )


# --- a hub whose routes meet a database error, its audit log working ---------------------


def _routes(app: FastAPI) -> None:
    """An audited route whose own connection is lost (PostgreSQL: terminated; SQLite:
    locked past a short busy timeout), and one that reads a table that does not exist."""

    @app.get("/test/connection-lost", dependencies=[Depends(audited("test.database"))])
    async def connection_lost(request: Request) -> None:
        engine = hub_of(request.app).engine
        async with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                await _locked(conn, Path(str(engine.url.database)))
            await conn.execute(sa.text("SELECT pg_terminate_backend(pg_backend_pid())"))

    @app.get("/test/missing-table", dependencies=[Depends(audited("test.database"))])
    async def missing_table(request: Request) -> None:
        async with hub_of(request.app).engine.connect() as conn:
            await conn.execute(sa.text("SELECT * FROM no_such_table"))


async def _locked(conn: Any, path: Path) -> None:
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    await conn.exec_driver_sql("PRAGMA busy_timeout=50")
    try:
        await conn.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        await conn.exec_driver_sql(f"PRAGMA busy_timeout={db.BUSY_TIMEOUT_MS}")
        holder.execute("ROLLBACK")
        holder.close()


@pytest.fixture(scope="module", params=DATABASES)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    database_url = module_database(request, tmp_path_factory)
    data_dir = tmp_path_factory.mktemp("hub")
    with running_hub(database_url=database_url, data_dir=data_dir, adjust=_routes) as hub:
        yield hub


def _database_refusals_counted(hub: RunningHub) -> float:
    """``onceonly_refusals_total`` of the test's route and ``database-unavailable`` (the
    series are the process's: every hub of the tests counts into them)."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in hub.metrics().text.splitlines()
        if line.startswith('onceonly_refusals_total{action="test.database"')
        and 'reason="database-unavailable"' in line
    )


def test_a_lost_connection_is_503_and_its_refusal_is_audited_and_counted(
    hub: RunningHub, hub_log: pytest.LogCaptureFixture
) -> None:
    counted = _database_refusals_counted(hub)
    answer = httpx.get(f"{hub.url}/test/connection-lost", timeout=30)
    _assert_database_unavailable(answer)
    entry = audit_entry_for(hub, answer, action="test.database")
    assert (entry["outcome"], entry["reason"]) == ("failed", "database-unavailable")
    (line,) = [r for r in _warnings_of(hub_log, answer) if r.name == "onceonly.errors"]
    assert (line.levelno, line.exc_info) == (logging.WARNING, None)
    assert _database_refusals_counted(hub) == counted + 1


def test_a_statement_on_a_table_that_does_not_exist_is_still_a_500_with_its_traceback(
    hub: RunningHub, hub_log: pytest.LogCaptureFixture
) -> None:
    answer = httpx.get(f"{hub.url}/test/missing-table", timeout=30)
    assert answer.status_code == 500
    assert problem_type(answer) == "internal-error"
    assert "retry-after" not in answer.headers
    (line,) = [r for r in _warnings_of(hub_log, answer) if r.name == "onceonly.errors"]
    assert (line.levelno, line.getMessage()) == (logging.ERROR, "unexpected error")
    assert line.exc_info is not None
    entry = audit_entry_for(hub, answer, action="test.database")
    assert (entry["outcome"], entry["reason"]) == ("failed", "internal-error")
