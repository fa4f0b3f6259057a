"""A PostgreSQL server that answers nothing costs the hub a bounded wait, not minutes: the
engines give libpq a connect timeout, TCP keepalives and a TCP user timeout, each of
which the database URL's query overrides (``db.POSTGRES_TIMEOUTS``, decision 0052).

What reaches libpq is read back from the connection (psycopg's ``info``) and from its
socket (the kernel's options). On the wire, the engines reach PostgreSQL through the
loopback proxy of tests/hub/pg_proxy.py, which can accept a connection and never answer
it, or stop reading a carried one; and, where the machine lets a user make a network
namespace, through one whose loopback interface goes down under established connections
(tests/hub/vanishing_host.py): a host that vanished, its packets dropped."""

import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from onceonly.hub import db, errors

from tests.hub import vanishing_host
from tests.hub.pg_proxy import ProxyThread, ResettingProxy, proxy_in_thread, through, upstream_of
from tests.hub_testing import RunningHub, module_database, problem_type, running_hub

pytestmark = pytest.mark.postgres

_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "25000",
}
_OVERRIDES = {
    "connect_timeout": "3",
    "keepalives_idle": "7",
    "keepalives_interval": "2",
    "keepalives_count": "4",
    "tcp_user_timeout": "1234",
}


def _with_query(url: str, query: dict[str, str]) -> str:
    return make_url(url).update_query_dict(query).render_as_string(hide_password=False)


def _seen_by_libpq_and_kernel(driver: Any) -> dict[str, str]:
    """The connection's timeouts as libpq holds them, each checked against its socket."""
    parameters = driver.info.get_parameters()
    seen = {name: parameters[name] for name in _DEFAULTS if name in parameters}
    with socket.socket(fileno=os.dup(driver.pgconn.socket)) as sock:
        kernel = {
            "keepalives": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            "keepalives_idle": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            "keepalives_interval": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            "keepalives_count": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            "tcp_user_timeout": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        }
    if not kernel["keepalives"]:  # libpq sets the others only with keepalives on
        assert kernel["tcp_user_timeout"] == 0
        kernel = {"keepalives": 0}
    for name, value in kernel.items():
        if name in seen:
            assert value == int(seen[name]), name
    return seen


async def _async_seen(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        return _seen_by_libpq_and_kernel(raw.driver_connection)


def _sync_seen(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return _seen_by_libpq_and_kernel(conn.connection.driver_connection)


async def _seen(make: Callable[[str], AsyncEngine | sa.Engine], url: str) -> dict[str, str]:
    engine = make(url)
    try:
        if isinstance(engine, AsyncEngine):
            return await _async_seen(engine)
        return _sync_seen(engine)
    finally:
        if isinstance(engine, AsyncEngine):
            await engine.dispose()
        else:
            engine.dispose()


def _probe(url: str) -> sa.Engine:
    return db.probe_engine(url, connect_timeout=7)


_ENGINES = pytest.mark.parametrize(
    "make",
    [db.make_engine, db.make_sync_engine, _probe],
    ids=["make_engine", "make_sync_engine", "probe_engine"],
)


# --- what reaches libpq and the socket ----------------------------------------------------


@pytest.mark.anyio
@_ENGINES
async def test_each_engine_gives_libpq_and_the_socket_the_timeouts(
    make: Callable[[str], AsyncEngine | sa.Engine], postgres_url: str
) -> None:
    expected = {**_DEFAULTS, "connect_timeout": "7"} if make is _probe else _DEFAULTS
    assert await _seen(make, postgres_url) == expected


@pytest.mark.anyio
@_ENGINES
async def test_the_database_urls_query_wins_over_each_default(
    make: Callable[[str], AsyncEngine | sa.Engine], postgres_url: str
) -> None:
    url = _with_query(postgres_url, _OVERRIDES)
    assert await _seen(make, url) == {**_DEFAULTS, **_OVERRIDES}


@pytest.mark.anyio
async def test_a_url_that_turns_keepalives_off_turns_the_user_timeout_off_too(
    postgres_url: str,
) -> None:
    """libpq sets TCP_USER_TIMEOUT with the keepalives: without them the socket has
    neither (the parameters are still passed; docs/operations.md says so)."""
    seen = await _seen(db.make_engine, _with_query(postgres_url, {"keepalives": "0"}))
    assert seen == {**_DEFAULTS, "keepalives": "0"}


@pytest.mark.anyio
async def test_libpqs_environment_variable_wins_over_the_default_connect_timeout(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "9")
    assert await _seen(db.make_engine, postgres_url) == {**_DEFAULTS, "connect_timeout": "9"}


# --- a server that accepts and never answers ----------------------------------------------


@pytest.fixture
async def proxy(postgres_url: str) -> AsyncIterator[ResettingProxy]:
    url = make_url(postgres_url)
    proxy = ResettingProxy((url.host or "127.0.0.1", url.port or 5432))
    await proxy.start()
    yield proxy
    await proxy.close()


async def _connect_fails_after(engine: AsyncEngine | sa.Engine) -> tuple[float, Exception]:
    """Seconds until a connection attempt failed (the test fails past 20 s: libpq alone
    would wait for ever on a server that accepted, psycopg's async connect 130 s)."""
    started = time.monotonic()
    try:
        with anyio.fail_after(20):
            if isinstance(engine, AsyncEngine):
                async with engine.connect() as conn:
                    await conn.execute(sa.text("SELECT 1"))
            else:  # off the loop, where the proxy runs
                await anyio.to_thread.run_sync(_select_one, engine, abandon_on_cancel=True)
    except sa.exc.DBAPIError as error:
        return time.monotonic() - started, error
    raise AssertionError("the connection was made")


def _select_one(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("query", "least", "most"),
    [({}, 4.5, 8.0), ({"connect_timeout": "2"}, 1.5, 4.0)],
    ids=["default-5s", "url-2s"],
)
async def test_a_server_that_never_answers_fails_the_connection_at_its_timeout(
    proxy: ResettingProxy, postgres_url: str, query: dict[str, str], least: float, most: float
) -> None:
    proxy.ignore_new = True
    engine = db.make_engine(through(proxy.port, postgres_url, **query))
    try:
        took, error = await _connect_fails_after(engine)
    finally:
        await engine.dispose()
    assert least < took < most
    assert isinstance(getattr(error, "orig", None), psycopg.errors.ConnectionTimeout)
    assert errors.database_away(error) is not None


@pytest.mark.anyio
async def test_a_command_probe_takes_the_urls_connect_timeout_over_its_own(
    proxy: ResettingProxy, postgres_url: str
) -> None:
    proxy.ignore_new = True
    url = through(proxy.port, postgres_url, connect_timeout="2")
    engine = db.probe_engine(url, connect_timeout=10)
    try:
        took, _ = await _connect_fails_after(engine)
    finally:
        engine.dispose()
    assert 1.5 < took < 4.0


@pytest.mark.anyio
async def test_a_statement_the_server_stops_reading_fails_at_the_urls_tcp_user_timeout(
    proxy: ResettingProxy, postgres_url: str
) -> None:
    """The proxy's kernel acknowledges a short statement, so only a statement longer
    than both sockets' buffers waits on a closed window, which TCP_USER_TIMEOUT bounds
    (Linux 5.11 and later)."""
    url = through(proxy.port, postgres_url, tcp_user_timeout="1000")
    engine = db.make_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.scalar(sa.text("SELECT 1"))
            proxy.silence()
            started = time.monotonic()
            with anyio.fail_after(15), pytest.raises(sa.exc.DBAPIError) as failed:
                await conn.scalar(sa.text("SELECT length(:text)"), {"text": "x" * 16_000_000})
            took = time.monotonic() - started
    finally:
        await engine.dispose()
    assert took < 6
    assert errors.database_away(failed.value) == (
        "the connection was lost (psycopg OperationalError)"
    )


# --- a hub whose database answers nothing -------------------------------------------------


@pytest.fixture(scope="module", params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def silent_hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningHub, ProxyThread]]:
    database_url = module_database(request, tmp_path_factory)
    with proxy_in_thread(upstream_of(database_url)) as proxy:
        with running_hub(
            database_url=through(proxy.port, database_url),
            data_dir=tmp_path_factory.mktemp("hub"),
        ) as hub:
            yield hub, proxy


def test_a_hub_whose_database_answers_nothing_answers_503_within_the_connect_timeout(
    silent_hub: tuple[RunningHub, ProxyThread],
) -> None:
    """A route that is not audited (the latest checkpoint), and /readyz. An audited route
    waits for its refusal's audit entry too, whose writer tries five times, each a
    connection attempt (decision 0052, Consequences)."""
    hub, proxy = silent_hub
    proxy.unanswering()
    try:
        checkpoint, checkpoint_took = _timed_get(f"{hub.url}/v1/audit/checkpoint")
        ready, ready_took = _timed_get(f"{hub.url}/readyz")
    finally:
        proxy.back()
    assert checkpoint.status_code == 503, checkpoint.text
    assert problem_type(checkpoint) == "database-unavailable"
    assert checkpoint.headers["retry-after"] == str(errors.DATABASE_RETRY_AFTER)
    assert (ready.status_code, problem_type(ready)) == (503, "unavailable")
    assert checkpoint_took < 10
    assert ready_took < 10
    assert httpx.get(f"{hub.url}/readyz", timeout=30).status_code == 200


def _timed_get(url: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = httpx.get(url, timeout=30)
    return answer, time.monotonic() - started


# --- a pool whose connections are all taken -----------------------------------------------


@pytest.mark.anyio
async def test_a_checkout_from_a_pool_whose_connections_are_all_taken_gives_up_in_5_s(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not SQLAlchemy's 30 s: the SDK's client gives up after 10 s."""
    monkeypatch.setattr(db, "POOL_SIZE", 1)
    monkeypatch.setattr(db, "MAX_OVERFLOW", 0)
    engine = db.make_engine(postgres_url)
    try:
        async with engine.connect():
            started = time.monotonic()
            with anyio.fail_after(15), pytest.raises(sa.exc.TimeoutError) as waited:
                async with engine.connect():
                    pass
            took = time.monotonic() - started
    finally:
        await engine.dispose()
    assert 4.5 < took < 7
    assert errors.database_away(waited.value) is not None


# --- a host that vanishes under established connections -----------------------------------


@pytest.fixture
def vanishing_reason() -> None:
    reason = vanishing_host.can_run()
    if reason is not None:
        pytest.skip(reason)


def test_a_host_that_vanishes_fails_statements_and_idle_connections_within_the_timeouts(
    vanishing_reason: None, postgres_url: str
) -> None:
    """The hub's defaults: a statement sent, and an idle connection (keepalives), are
    given up after 25 s, not TCP's 15 minutes; smaller values in the URL, sooner."""
    url = make_url(postgres_url)
    query = {"tcp_user_timeout": "2000", "keepalives_idle": "1", "keepalives_interval": "1"}
    with tempfile.TemporaryDirectory(prefix="h-") as folder:  # short: a socket's path
        path = str(Path(folder) / "pg")
        with proxy_in_thread((url.host or "127.0.0.1", url.port or 5432), unix_path=path):
            run = subprocess.run(
                vanishing_host.command(path, _with_query(postgres_url, query)),
                capture_output=True,
                timeout=vanishing_host.WATCH + 30,
                cwd=Path(__file__).parents[2],
                check=False,
            )
    assert run.returncode == 0, run.stderr.decode()
    found = json.loads(run.stdout)
    lost = "the connection was lost (psycopg OperationalError)"
    defaults, url_values = found["defaults"], found["url"]
    assert defaults["away"] == lost
    assert 20 < defaults["statement"] < 35
    assert 20 < defaults["idle"] < 35
    assert url_values["away"] == lost
    assert url_values["statement"] < 5
    assert url_values["idle"] < 5
