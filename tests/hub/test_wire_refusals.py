"""A hostile review of the hub's HTTP surface, on the wire (real HTTP on loopback, raw
sockets where framing matters): a client gone mid-body, repeated single-valued fields,
framing the server refuses, the OAuth endpoints' challenge, caching of personal data,
and forwarded addresses. Every test runs on SQLite and PostgreSQL.
"""

import logging
import socket
from collections.abc import Iterator

import pytest

from tests.hub_testing import (
    DATABASES,
    RunningHub,
    added_audit_entries,
    module_database,
    running_hub,
    wait_until,
)


@pytest.fixture(scope="module", params=DATABASES)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    """One hub per module and database: each test finds the entries its requests left."""
    database_url = module_database(request, tmp_path_factory)
    with running_hub(database_url=database_url, data_dir=tmp_path_factory.mktemp("hub")) as hub:
        yield hub


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def error_log() -> Iterator[list[logging.LogRecord]]:
    """What the hub's error handler logs during the test."""
    handler = Records()
    logger = logging.getLogger("onceonly.errors")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


def requests_counted(hub: RunningHub, *, route: str, status: str) -> float:
    """``onceonly_http_requests_total`` of POST ``route`` answered ``status``."""
    series = f'onceonly_http_requests_total{{method="POST",route="{route}",status="{status}"}} '
    for line in hub.metrics().text.splitlines():
        if line.startswith(series):
            return float(line.removeprefix(series))
    return 0.0


def port_of(hub: RunningHub) -> int:
    return int(hub.url.rsplit(":", 1)[1])


def send_and_leave(hub: RunningHub, data: bytes) -> None:
    """Send ``data`` on a new connection and close it without reading an answer."""
    with socket.create_connection(("127.0.0.1", port_of(hub)), timeout=10) as sock:
        sock.sendall(data)


def raw_exchange(hub: RunningHub, data: bytes) -> bytes:
    """Send ``data``; everything the server answered before it closed the connection."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port_of(hub)), timeout=10) as sock:
        sock.sendall(data)
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


CUT_SHORT = {
    "json": (
        "/v1/people/sign-in",
        b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"username":',
    ),
    "json-chunked": (
        "/v1/people/sign-in",
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'c\r\n{"username":\r\n',
    ),
    "form": (
        "/oauth/token",
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
        b"grant_type=client_credentials&client_id=",
    ),
    "form-chunked": (
        "/oauth/token",
        b"Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"10\r\ngrant_type=clien\r\n",
    ),
}


@pytest.mark.parametrize("body", list(CUT_SHORT))
def test_a_client_gone_mid_body_is_a_499_not_a_500(
    hub: RunningHub, error_log: list[logging.LogRecord], body: str
) -> None:
    """A client that closed its connection before its body was whole was logged as an
    unexpected error with a traceback and counted as a 500: anyone could push the
    hub's 500-rate alert. It is counted as 499 (nginx's "client closed request")."""
    route, rest = CUT_SHORT[body]
    counted = requests_counted(hub, route=route, status="499")
    errors = requests_counted(hub, route=route, status="500")
    send_and_leave(hub, b"POST %s HTTP/1.1\r\nHost: hub\r\n" % route.encode() + rest)
    wait_until(
        lambda: requests_counted(hub, route=route, status="499") == counted + 1,
        what="the request counted as 499",
    )
    assert requests_counted(hub, route=route, status="500") == errors
    assert [r for r in error_log if r.levelno >= logging.WARNING] == []
    assert all(r.exc_info is None for r in error_log)


def test_an_audited_request_cut_short_is_refused_client_disconnected(hub: RunningHub) -> None:
    """Every refusal is audited: the attempt stays visible, as refused, not as a fault."""
    route, rest = CUT_SHORT["json"]
    counted = requests_counted(hub, route=route, status="499")
    with added_audit_entries(hub, action="person.sign-in") as entries:
        send_and_leave(hub, b"POST %s HTTP/1.1\r\nHost: hub\r\n" % route.encode() + rest)
        wait_until(lambda: requests_counted(hub, route=route, status="499") == counted + 1)
    (entry,) = entries
    assert (entry["outcome"], entry["reason"]) == ("refused", "client-disconnected")
