"""A SQL source on PostgreSQL whose server answers nothing holds its worker threads for a
bounded time, not minutes: the engine an item's settings make gives libpq the hub's
connect timeout, keepalives and TCP user timeout, the server a ``statement_timeout`` of
the item's own ``timeout``, and the pool a wait no longer than it, each unless the
database URL sets it (decision 0052, Later note; docs/adapters.md "SQL").

What reaches libpq is read back on a real connection (the server's setting, the
socket's options); on the wire the source reaches PostgreSQL through the loopback proxy
of tests/hub/pg_proxy.py, which can accept connections and never answer them."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from onceonly.adapters import RecordStore, SourceUnavailable, SqlItem
from onceonly.adapters._sources import RecordSource, close_sources
from onceonly.adapters._sql import POSTGRES_TIMEOUTS, postgres_connect_args
from onceonly.hub import db

from tests.hub.pg_proxy import ResettingProxy

pytestmark = pytest.mark.anyio

SUBJECT = "38001085718"
_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "25000",
}


def _args(url: str, timeout: float = 0.5) -> dict[str, str]:
    return postgres_connect_args(make_url(url), statement_timeout=timeout)


# --- the rule -------------------------------------------------------------------------


def test_the_adapters_defaults_are_the_hubs() -> None:
    """Written twice, since the adapters do not import the hub: this keeps them one."""
    assert dict(POSTGRES_TIMEOUTS) == dict(db.POSTGRES_TIMEOUTS) == _DEFAULTS


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql+psycopg://adapter@db/registry",
            {**_DEFAULTS, "options": "-c statement_timeout=500"},
        ),
        (
            "postgresql+psycopg://adapter@db/registry?connect_timeout=2&tcp_user_timeout=1000"
            "&keepalives_idle=1&keepalives_interval=1&keepalives_count=9&keepalives=0",
            {"options": "-c statement_timeout=500"},
        ),
        (
            "postgresql+psycopg://adapter@db/registry?options=-c%20search_path%3Dlegacy",
            {**_DEFAULTS, "options": "-c search_path=legacy -c statement_timeout=500"},
        ),
        (
            "postgresql+psycopg://adapter@db/registry?options=-c%20statement_timeout%3D0",
            _DEFAULTS,
        ),
    ],
    ids=["defaults", "url-timeouts-win", "url-options-kept", "url-statement-timeout-wins"],
)
def test_the_urls_query_wins_over_each_default(url: str, expected: dict[str, str]) -> None:
    assert _args(url) == expected


def test_libpqs_environment_wins_and_pgoptions_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """libpq reads ``PGOPTIONS`` only when no ``options`` is passed, so it is passed on."""
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "9")
    monkeypatch.setenv("PGOPTIONS", "-c search_path=legacy")

    args = _args("postgresql+psycopg://adapter@db/registry", timeout=2.25)

    assert args == {
        **{name: value for name, value in _DEFAULTS.items() if name != "connect_timeout"},
        "options": "-c search_path=legacy -c statement_timeout=2250",
    }


# --- on a real connection ------------------------------------------------------------


def _psycopg(url: str, **query: str) -> str:
    parsed = make_url(url).set(drivername="postgresql+psycopg").update_query_dict(query)
    return parsed.render_as_string(hide_password=False)


def _opened(url: str, query: str, *, timeout: float, store_path: Path) -> RecordSource:
    item = SqlItem(source="sql", url=url, query=query, timeout=timeout)
    with RecordStore(store_path) as store:
        return item.open(store=store)


def _socket_to(local_port: int) -> socket.socket:
    """This process's socket whose local port is ``local_port``: the source's connection,
    as the server saw it (``inet_client_port()``)."""
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        try:
            if sock.family == socket.AF_INET and sock.getsockname()[1] == local_port:
                return sock
        except OSError:
            pass
        sock.close()
    raise AssertionError(f"no socket on local port {local_port}")


def _socket_options(sock: socket.socket) -> dict[str, str]:
    with sock:
        return {
            "keepalives": str(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)),
            "keepalives_idle": str(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)),
            "keepalives_interval": str(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL)),
            "keepalives_count": str(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)),
            "tcp_user_timeout": str(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)),
        }


_SETTINGS_QUERY = (
    "SELECT current_setting('statement_timeout') AS statement_timeout,"
    " inet_client_port() AS port WHERE CAST(:subject AS text) IS NOT NULL"
)


@pytest.mark.postgres
async def test_a_source_from_settings_gives_the_server_and_the_socket_the_bounds(
    postgres_url: str, tmp_path: Path
) -> None:
    source = _opened(
        _psycopg(postgres_url), _SETTINGS_QUERY, timeout=1.5, store_path=tmp_path / "s.db"
    )
    try:
        record = await source.fetch("x.y", SUBJECT)
        assert record is not None
        seen = _socket_options(_socket_to(int(record["port"])))
    finally:
        await close_sources([source])

    assert record["statement_timeout"] == "1500ms"
    assert seen == {name: value for name, value in _DEFAULTS.items() if name != "connect_timeout"}


@pytest.mark.postgres
async def test_the_urls_own_values_reach_the_server_and_the_socket(
    postgres_url: str, tmp_path: Path
) -> None:
    url = _psycopg(
        postgres_url,
        options="-c statement_timeout=7s",
        keepalives_idle="7",
        tcp_user_timeout="1234",
    )
    source = _opened(url, _SETTINGS_QUERY, timeout=1.5, store_path=tmp_path / "s.db")
    try:
        record = await source.fetch("x.y", SUBJECT)
        assert record is not None
        seen = _socket_options(_socket_to(int(record["port"])))
    finally:
        await close_sources([source])

    assert record["statement_timeout"] == "7s"
    assert (seen["keepalives_idle"], seen["tcp_user_timeout"]) == ("7", "1234")


@pytest.mark.postgres
async def test_a_statement_the_adapter_gave_up_on_does_not_keep_running_on_the_server(
    postgres_url: str, tmp_path: Path
) -> None:
    """The server ends it at the item's timeout (``statement_timeout``), so its worker
    thread returns with the adapter's answer instead of when the statement is done."""
    marker = f"adapter_{uuid.uuid4().hex[:12]}"
    query = f"SELECT pg_sleep(10) AS slept, CAST(:subject AS text) AS {marker}"
    source = _opened(_psycopg(postgres_url), query, timeout=0.3, store_path=tmp_path / "s.db")
    admin = sa.create_engine(_psycopg(postgres_url), isolation_level="AUTOCOMMIT")
    running = sa.text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE state = 'active' AND query LIKE :marker AND pid <> pg_backend_pid()"
    )
    try:
        with anyio.fail_after(2), pytest.raises(SourceUnavailable, match=r"in 0\.3 s"):
            await source.fetch("x.y", SUBJECT)
        with anyio.fail_after(3):
            while True:
                with admin.connect() as conn:
                    if not conn.scalar(running, {"marker": f"%{marker}%"}):
                        break
                await anyio.sleep(0.05)
    finally:
        with admin.connect() as conn:  # the code before: the statement runs on, 10 s
            conn.execute(
                sa.text(
                    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
                    " WHERE query LIKE :marker AND pid <> pg_backend_pid()"
                ),
                {"marker": f"%{marker}%"},
            )
        admin.dispose()
        await close_sources([source])


# --- a server that accepts connections and never answers -------------------------------


@pytest.fixture
async def proxy(postgres_url: str) -> AsyncIterator[ResettingProxy]:
    url = make_url(postgres_url)
    proxy = ResettingProxy((url.host or "127.0.0.1", url.port or 5432))
    await proxy.start()
    yield proxy
    await proxy.close()  # resets the connections it never answered


async def _unavailable(source: RecordSource) -> Any:
    with pytest.raises(SourceUnavailable) as caught:
        await source.fetch("x.y", SUBJECT)
    return caught.value


@pytest.mark.postgres
async def test_a_source_serves_again_within_the_connect_timeout_once_its_server_answers(
    proxy: ResettingProxy, postgres_url: str, tmp_path: Path
) -> None:
    """More fetches at once than the engine's pool holds connections (5, and 10 more):
    each is answered 503 at the item's timeout, and the worker threads they leave
    behind, each waiting for a connection the server accepted and never answered, give
    up at libpq's connect timeout (5 s) and free the pool. Before: libpq waited for
    ever, every connection of the pool stayed taken, and the source answered 503 long
    after its server answered again."""
    url = make_url(_psycopg(postgres_url)).set(host="127.0.0.1", port=proxy.port)
    query = "SELECT CAST(:subject AS text) AS subject"
    source = _opened(
        url.render_as_string(hide_password=False), query, timeout=0.5, store_path=tmp_path / "s"
    )
    proxy.ignore_new = True
    try:
        started = time.monotonic()
        with anyio.fail_after(3):
            async with anyio.create_task_group() as group:
                for _ in range(20):
                    group.start_soon(_unavailable, source)
        proxy.ignore_new = False  # the server answers new connections again
        with anyio.fail_after(12):
            while True:
                try:
                    record = await source.fetch("x.y", SUBJECT)
                    break
                except SourceUnavailable:
                    await anyio.sleep(0.2)
        served_after = time.monotonic() - started
    finally:
        await close_sources([source])

    assert record == {"subject": SUBJECT}
    assert 4.5 < served_after < 8
