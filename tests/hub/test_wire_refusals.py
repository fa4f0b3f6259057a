"""A hostile review of the hub's HTTP surface, on the wire (real HTTP on loopback, raw
sockets where framing matters): a client gone mid-body, repeated single-valued fields,
framing the server refuses, the OAuth endpoints' challenge, caching of personal data,
and forwarded addresses. Every test runs on SQLite and PostgreSQL.
"""

import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.hub_testing import (
    DATABASES,
    RunningHub,
    added_audit_entries,
    module_database,
    problem_type,
    raw_exchange,
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


def test_a_bad_chunk_mid_body_is_the_400_the_client_got_not_a_499(hub: RunningHub) -> None:
    """The server answers a malformed chunk with its 400 problem and closes the
    connection; the route reading the body then read a ClientDisconnect, and the request
    was logged and counted as 499 and audited refused client-disconnected, though the
    client had been answered (a hostile review of decision 0073)."""
    route = "/v1/people/sign-in"
    head = (
        b"POST %s HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" % route.encode()
    )
    gone = requests_counted(hub, route=route, status="499")
    refused = requests_counted(hub, route=route, status="400")
    with added_audit_entries(hub, action="person.sign-in") as entries:
        with socket.create_connection(("127.0.0.1", port_of(hub)), timeout=10) as sock:
            sock.sendall(head + b'5\r\n{"use\r\n')
            time.sleep(0.2)  # the route is reading the body when the bad chunk comes
            sock.sendall(b"zz\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        wait_until(
            lambda: requests_counted(hub, route=route, status="400") == refused + 1,
            what="the request counted as 400",
        )
    status, _, body = answer_parts(answer)
    assert status == 400, answer
    assert json.loads(body)["type"] == "urn:onceonly:problem:invalid-request"
    assert requests_counted(hub, route=route, status="499") == gone
    (entry,) = entries
    assert (entry["outcome"], entry["reason"]) == ("refused", "invalid-request")


def answer_parts(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    """A raw answer's status code, header fields (lower-case names) and body."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in fields.items()}, body


@pytest.mark.parametrize(
    ("path", "field", "values"),
    [
        ("/v1/items/person.identity/events", "Idempotency-Key", ('"k1"', '"k2"')),
        ("/v1/people/sign-in", "Content-Type", ("application/json", "text/plain")),
    ],
)
def test_a_single_valued_field_given_twice_is_refused_before_any_route(
    hub: RunningHub, path: str, field: str, values: tuple[str, str]
) -> None:
    """Idempotency-Key is one RFC 8941 string: two lines join into '"k1", "k2"', and the
    hub read the first. Two Content-Type fields are two readings of one body."""
    body = b'{"username": "nobody", "password": "wrong"}'
    once = httpx.post(f"{hub.url}{path}", content=body, headers=[(field, values[0])])
    assert once.status_code == 401, once.text  # read, and refused for what it lacks
    twice = httpx.post(
        f"{hub.url}{path}", content=body, headers=[(field, values[0]), (field, values[1])]
    )
    assert twice.status_code == 400, twice.text
    assert problem_type(twice) == "invalid-request"
    assert f"more than one {field} field" in twice.json()["detail"]


@pytest.mark.parametrize(
    "head",
    [b"GET /healthz HTTP/1.1\r\n", b"GET /healthz HTTP/1.1\r\nHost: hub\r\nHost: evil.example\r\n"],
    ids=["none", "two"],
)
def test_an_http11_request_without_one_host_field_is_refused(hub: RunningHub, head: bytes) -> None:
    """RFC 9112 §3.2: a server answers 400 to an HTTP/1.1 request without a Host field,
    or with more than one."""
    status, fields, body = answer_parts(raw_exchange(hub.url, head + b"Connection: close\r\n\r\n"))
    assert status == 400, body
    assert fields["content-type"] == "application/problem+json"
    assert b"urn:onceonly:problem:invalid-request" in body
    assert b"Host field" in body


def test_an_http10_request_needs_no_host_field(hub: RunningHub) -> None:
    """Host is required of HTTP/1.1 requests only (RFC 9112 §3.2; RFC 1945 has none)."""
    status, _, body = answer_parts(raw_exchange(hub.url, b"GET /healthz HTTP/1.0\r\n\r\n"))
    assert status == 200, body


@pytest.mark.parametrize("version", ["1.1", "1.0"])
@pytest.mark.parametrize("host", ["a b/c@d", "user@hub", "hub/x", "[::1", "hub:80:80", "hub:x"])
def test_a_host_field_that_is_no_host_and_port_is_refused(
    hub: RunningHub, version: str, host: str
) -> None:
    """RFC 9112 §3.2: a server MUST answer 400 to a request whose Host field has an
    invalid value (RFC 3986 ``host [ ":" port ]``); ``Host: a b/c@d`` was answered 200."""
    head = f"GET /healthz HTTP/{version}\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    status, fields, body = answer_parts(raw_exchange(hub.url, head.encode()))
    assert status == 400, body
    assert fields["content-type"] == "application/problem+json"
    assert json.loads(body)["type"] == "urn:onceonly:problem:invalid-request"
    assert b"Host field" in body


@pytest.mark.parametrize(
    "host", ["hub", "hub:8080", "127.0.0.1:1", "[::1]:80", "[v1.x]", "xn--bcher-kva.example", ""]
)
def test_a_host_field_that_is_a_host_and_port_is_taken(hub: RunningHub, host: str) -> None:
    head = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    status, _, body = answer_parts(raw_exchange(hub.url, head.encode()))
    assert status == 200, body


@pytest.mark.parametrize(
    "request_line",
    [b"GET /healthz HTTP/2.0\r\n", b"GET /healthz HTTP/2.0\r\nHost: hub\r\n", b"GET /healthz\r\n"],
    ids=["2.0", "2.0-with-host", "no-version"],
)
def test_a_request_of_another_http_version_is_505(hub: RunningHub, request_line: bytes) -> None:
    """The parser passes HTTP/2.0 (and 0.9 for a request line without a version) on an
    HTTP/1.1 connection: it was answered 200, as HTTP/1.1, without a Host field."""
    status, fields, body = answer_parts(raw_exchange(hub.url, request_line + b"\r\n"))
    assert status == 505, body
    assert fields["content-type"] == "application/problem+json"
    assert json.loads(body)["type"] == "urn:onceonly:problem:http-version-not-supported"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: hub\r\nNo colon here\r\n\r\n",
        b"GET /he lthz HTTP/1.1\r\nHost: hub\r\n\r\n",
        b"POST /v1/people/sign-in HTTP/1.1\r\nHost: hub\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\n",
    ],
    ids=["header-field", "request-line", "chunk-size"],
)
def test_a_request_the_server_cannot_parse_gets_a_problem(
    hub: RunningHub, request_bytes: bytes
) -> None:
    """uvicorn answered 'Invalid HTTP request received.' as text/plain; every error the
    hub answers is an RFC 9457 problem (docs/problems.md)."""
    status, fields, body = answer_parts(raw_exchange(hub.url, request_bytes))
    assert status == 400, body
    assert fields["content-type"] == "application/problem+json"
    assert fields["connection"] == "close"
    problem = json.loads(body)
    assert problem["type"] == "urn:onceonly:problem:invalid-request"
    assert (problem["title"], problem["status"]) == ("Invalid request", 400)
    assert "HTTP/1.1" in problem["detail"]


@pytest.mark.parametrize("method", [b"FOO", b"BREW", b"get", b"DESCRIBE", b"\r\nFOO"])
def test_a_method_the_server_does_not_know_is_501(hub: RunningHub, method: bytes) -> None:
    """RFC 9110 §9.1 and §15.6.2: a method the server does not recognize should be
    answered 501; it was 400 'not well-formed HTTP/1.1' (methods are case-sensitive,
    so ``get`` is not ``GET``; ``DESCRIBE`` is RTSP's, which the parser names apart)."""
    status, fields, body = answer_parts(
        raw_exchange(hub.url, method + b" /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
    )
    assert status == 501, body
    assert fields["content-type"] == "application/problem+json"
    assert fields["connection"] == "close"
    assert "date" in fields
    problem = json.loads(body)
    assert problem["type"] == "urn:onceonly:problem:method-not-implemented"
    assert problem["status"] == 501


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS handshake on the plain port
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b" GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n",
        b"GET\t/healthz HTTP/1.1\r\nHost: hub\r\n\r\n",
    ],
    ids=["tls", "ssh", "leading-space", "tab"],
)
def test_bytes_that_start_no_request_line_are_400_not_501(hub: RunningHub, garbage: bytes) -> None:
    """The parser says 'invalid method' of any bytes that start no method; only a
    well-formed request line with a method it does not know is 501 (a hostile review
    of decision 0077: these were told their method is not implemented)."""
    status, _, body = answer_parts(raw_exchange(hub.url, garbage))
    assert status == 400, body
    assert json.loads(body)["type"] == "urn:onceonly:problem:invalid-request"


def _status_lines(answer: bytes) -> list[bytes]:
    return [line for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


def test_a_request_that_cannot_be_read_after_another_leaves_that_ones_answer_alone(
    hub: RunningHub,
) -> None:
    """Bytes past a body's Content-Length, or a pipelined request the parser cannot
    read, while the answer before is under way: that answer goes out whole and alone,
    then the connection closes. Before, the client got 501 (400 before decision 0077)
    as the earlier request's answer, while its route ran and was audited."""
    sign_in = b'{"username": "nobody", "password": "not-the-password-1"}'
    overlong = (
        b"POST /v1/people/sign-in HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%sTRAILING-BYTES" % (len(sign_in), sign_in)
    )
    pipelined = b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\nFOO /healthz HTTP/1.1\r\n\r\n"
    bad_chunk = overlong.removesuffix(b"TRAILING-BYTES") + (
        b"POST /healthz HTTP/1.1\r\nHost: hub\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    )  # a queued request's bad body: it was answered 400 in the sign-in's place
    cases = (
        (overlong, b"HTTP/1.1 401 "),
        (pipelined, b"HTTP/1.1 200 "),
        (bad_chunk, b"HTTP/1.1 401 "),
    )
    for request, expected in cases:
        lines = _status_lines(raw_exchange(hub.url, request))
        assert len(lines) == 1, lines
        assert lines[0].startswith(expected), lines


def test_an_unknown_method_after_a_kept_alive_answer_is_501(hub: RunningHub) -> None:
    host, port = hub.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 "), first
        sock.sendall(b"FOO /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 501 "), answer


_SIGN_IN_BODY = b'{"username": "nobody", "password": "not-the-password-1"}'


def _chunked_sign_in(*codings: bytes) -> bytes:
    """A sign-in whose body is chunked, with ``codings`` as its Transfer-Encoding
    fields, one field each."""
    fields = b"".join(b"Transfer-Encoding: %s\r\n" % coding for coding in codings)
    return (
        b"POST /v1/people/sign-in HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
        + fields
        + b"\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(_SIGN_IN_BODY), _SIGN_IN_BODY)
    )


def _sign_ins_run(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sign-ins among ``entries`` that ran (their password was checked): another
    test's refusal for a client gone mid-body may be written while a later test runs."""
    return [entry for entry in entries if entry.get("reason") == "sign-in-failed"]


@pytest.mark.parametrize(
    "codings",
    [(b"gzip, chunked",), (b"x-unknown,chunked",), (b"gzip", b"Chunked"), (b"identity, chunked",)],
    ids=["gzip", "unknown", "two-fields", "identity"],
)
def test_a_transfer_coding_but_chunked_is_501_and_no_route_runs(
    hub: RunningHub, codings: tuple[bytes, ...]
) -> None:
    """RFC 9112 §6.1: a server that receives a transfer coding it does not understand
    SHOULD answer 501. The parser read ``gzip, chunked`` as chunked and left the gzip
    coding on the body the route read: the sign-in ran, and was audited, on bytes its
    client had not meant."""
    with added_audit_entries(hub, action="person.sign-in") as entries:
        status, fields, body = answer_parts(raw_exchange(hub.url, _chunked_sign_in(*codings)))
    assert status == 501, body
    assert fields["content-type"] == "application/problem+json"
    assert fields["connection"] == "close"
    assert "date" in fields
    problem = json.loads(body)
    assert problem["type"] == "urn:onceonly:problem:transfer-coding-not-implemented"
    assert (problem["title"], problem["status"]) == ("Transfer coding not implemented", 501)
    assert _sign_ins_run(entries) == []


def test_a_chunked_body_alone_is_read_and_a_final_coding_but_chunked_is_400(
    hub: RunningHub,
) -> None:
    """The 501 is only for a coding the body carries beneath chunked: chunked alone is
    read (the sign-in runs: 401), and a list whose final coding is not chunked leaves
    the body's length unknown, 400 (RFC 9112 §6.3)."""
    with added_audit_entries(hub, action="person.sign-in") as entries:
        status, fields, body = answer_parts(raw_exchange(hub.url, _chunked_sign_in(b"chunked")))
    assert status == 401, body
    (ran,) = [e for e in entries if e.get("request_id") == fields["x-request-id"]]
    assert ran["reason"] == "sign-in-failed"
    for codings in ((b"gzip",), (b"chunked, gzip",), (b"chunked", b"chunked")):
        status, _, body = answer_parts(raw_exchange(hub.url, _chunked_sign_in(*codings)))
        assert status == 400, (codings, body)
        assert json.loads(body)["type"] == "urn:onceonly:problem:invalid-request"


def test_an_http_1_0_request_with_a_transfer_encoding_is_400_and_no_route_runs(
    hub: RunningHub,
) -> None:
    """RFC 9112 §6.1: a server that receives an HTTP/1.0 message with Transfer-Encoding
    MUST treat its framing as faulty; it was read as chunked (helper-143)."""
    request = _chunked_sign_in(b"chunked").replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)
    with added_audit_entries(hub, action="person.sign-in") as entries:
        status, fields, body = answer_parts(raw_exchange(hub.url, request))
    assert status == 400, body
    assert fields["connection"] == "close"
    problem = json.loads(body)
    assert problem["type"] == "urn:onceonly:problem:invalid-request"
    assert "HTTP/1.0" in problem["detail"]
    assert _sign_ins_run(entries) == []


def test_a_transfer_coding_after_a_kept_alive_answer_is_501(hub: RunningHub) -> None:
    host, port = hub.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 "), first
        sock.sendall(_chunked_sign_in(b"gzip, chunked"))
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 501 "), answer
    assert b"transfer-coding-not-implemented" in answer


def test_a_transfer_coding_pipelined_behind_an_answer_leaves_that_answer_alone(
    hub: RunningHub,
) -> None:
    """Pipelined in the same read as a request still being answered: that answer goes
    out whole and alone, then the connection closes (as for the other requests the
    server cannot take while an answer is under way)."""
    request = b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n" + _chunked_sign_in(b"gzip, chunked")
    lines = _status_lines(raw_exchange(hub.url, request))
    assert len(lines) == 1, lines
    assert lines[0].startswith(b"HTTP/1.1 200 "), lines


def test_a_known_method_the_path_does_not_answer_stays_405(hub: RunningHub) -> None:
    status, fields, _ = answer_parts(
        raw_exchange(hub.url, b"PROPFIND /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
    )
    assert status == 405
    assert "GET" in fields["allow"]


@pytest.mark.parametrize("endpoint", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
@pytest.mark.parametrize("authorization", [None, "Basic eDp5"], ids=["none", "basic"])
def test_the_oauth_endpoints_401_carries_a_challenge(
    hub: RunningHub, endpoint: str, authorization: str | None
) -> None:
    """RFC 9110 §11.6.1: every 401 carries WWW-Authenticate; RFC 6749 §5.2. The endpoints
    take private_key_jwt only (or a TLS client certificate), never Basic: the challenge
    names that method, not a scheme they would refuse (decision 0073)."""
    form = {"grant_type": "client_credentials", "token": "x"}
    headers = {"Authorization": authorization} if authorization else {}
    answer = httpx.post(f"{hub.url}{endpoint}", data=form, headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "invalid_client"
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith('private_key_jwt realm="onceonly", error="invalid_client"')


def test_a_people_route_names_a_token_it_refuses_invalid_token(hub: RunningHub) -> None:
    """RFC 6750 §3.1: a token sent and refused is invalid_token; without one, the bare
    challenge."""
    refused = httpx.get(
        f"{hub.url}/v1/admin/people", headers={"Authorization": "Bearer oop_not-a-sign-in"}
    )
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == (
        'Bearer realm="onceonly-people", error="invalid_token"'
    )
    none = httpx.get(f"{hub.url}/v1/admin/people")
    assert none.status_code == 401
    assert none.headers["www-authenticate"] == 'Bearer realm="onceonly-people"'


def test_the_demo_and_test_hub_does_not_take_its_clients_address_from_them(
    hub: RunningHub,
) -> None:
    """serve_in_thread (the demo, tests) trusted X-Forwarded-For from loopback, which
    `onceonly serve` does only with --proxy-headers: a new value was a new source, and
    the sign-in throttle of an account from one source was reset by changing it."""
    attempt = {"username": "throttled-target", "password": "wrong"}
    url = f"{hub.url}/v1/people/sign-in"
    for _ in range(hub.settings.sign_in_max_failures):
        assert httpx.post(url, json=attempt).status_code == 401
    assert httpx.post(url, json=attempt).status_code == 429
    elsewhere = httpx.post(url, json=attempt, headers={"X-Forwarded-For": "203.0.113.7"})
    assert elsewhere.status_code == 429, elsewhere.text
