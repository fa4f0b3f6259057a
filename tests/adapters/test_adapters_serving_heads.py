"""``onceonly adapter serve`` bounds each request head at 64 KiB, as the hub does
(onceonly.adapters.serving.BoundedHeadProtocol): a larger one is answered 431 with a
problem document before the rest of it is read, without any request token.

uvicorn's httptools protocol kept the whole head in memory: a 50 MiB head was parsed,
and ten 100 MiB heads took an adapter from 148 to 1117 MiB. Here the head is streamed
and never finished, so only a bound can answer it."""

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from onceonly.adapters.serving import MAX_HEAD_BYTES, server_options
from onceonly.hub.cli.servers import PromptServer

from tests.adapters.adapter_testing import HubDouble, adapter_process, write_config
from tests.adapters.test_adapters_serving_slow_heads import closed_after

CHUNK = 16 * 1024


@pytest.fixture(scope="module", params=["1", "2"], ids=["one process", "two workers"])
def adapter(
    request: pytest.FixtureRequest, hub_server: HubDouble, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    path = write_config(tmp_path_factory.mktemp("adapter"), hub_url=hub_server.url)
    with adapter_process(path, "--workers", request.param) as (url, _):
        yield url


def unfinished_head(url: str, *, size: int, megabytes: int = 0) -> tuple[bytes, int]:
    """Send the start of a head ``size`` bytes long, then (``megabytes``) stream more
    of it until the server answers or closes, never ending the head; what came back
    (b"" when the server reset the connection, its answer lost with it) and the bytes
    sent in all."""
    host, port = url.removeprefix("http://").split(":")
    answer = b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: adapter\r\nX-Padding: " + b"a" * size)
        sent = size
        try:
            sock.setblocking(False)
            while sent < megabytes * 1024 * 1024:
                try:
                    answer += sock.recv(65536)
                    break  # it answered, or closed (b"")
                except BlockingIOError:
                    pass
                try:
                    sent += sock.send(b"a" * CHUNK)
                except BlockingIOError:
                    pass
            sock.settimeout(10)
            while chunk := sock.recv(65536):
                answer += chunk
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
    return answer, sent


def test_a_head_over_64_kib_is_431_before_it_ends(adapter: str) -> None:
    answer, _ = unfinished_head(adapter, size=MAX_HEAD_BYTES + 1024)

    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    problem = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert problem["type"] == "urn:onceonly:problem:request-header-fields-too-large"
    assert problem["status"] == 431
    assert httpx.get(f"{adapter}/healthz").status_code == 200  # and it goes on serving


def test_a_head_of_50_mib_is_cut_off_near_the_bound(adapter: str) -> None:
    answer, sent = unfinished_head(adapter, size=0, megabytes=50)

    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")
    assert sent < 16 * 1024 * 1024  # the bound, and what the kernel's buffers held
    assert httpx.get(f"{adapter}/healthz").status_code == 200


def test_a_head_within_the_bound_is_answered(adapter: str) -> None:
    fits = {"X-Padding": "a" * (MAX_HEAD_BYTES - 2048)}
    assert httpx.get(f"{adapter}/healthz", headers=fits).status_code == 200


def _exchange(adapter: str, request: bytes) -> bytes:
    """Send ``request`` on a new connection; all that comes back until it is closed."""
    host, port = adapter.removeprefix("http://").split(":")
    answer = b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_method_it_does_not_know_is_a_501_problem(adapter: str) -> None:
    """RFC 9110 §15.6.2; it was 400 'not well-formed HTTP/1.1'."""
    answer = _exchange(adapter, b"BREW /healthz HTTP/1.1\r\nHost: adapter\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 501 "), answer[:200]
    assert b"content-type: application/problem+json" in head
    problem = json.loads(body)
    assert problem["type"] == "urn:onceonly:problem:method-not-implemented"
    assert problem["title"] == "Method not implemented"


def test_a_transfer_coding_it_does_not_decode_is_a_501_problem(adapter: str) -> None:
    """RFC 9112 §6.1: ``gzip, chunked`` was read as chunked, the gzip coding ignored."""
    request = (
        b"POST /v1/items/x/records/query HTTP/1.1\r\nHost: adapter\r\n"
        b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    )
    head, _, body = _exchange(adapter, request).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 501 "), head
    assert b"content-type: application/problem+json" in head
    problem = json.loads(body)
    assert problem["type"] == "urn:onceonly:problem:transfer-coding-not-implemented"
    assert problem["status"] == 501
    assert problem["title"] == "Transfer coding not implemented"  # each type its own


def test_a_request_it_cannot_parse_is_a_400_problem(adapter: str) -> None:
    """uvicorn answered a malformed request 'Invalid HTTP request received.' as
    text/plain; the adapter's errors are RFC 9457 problems (docs/problems.md)."""
    answer = _exchange(adapter, b"GET /healthz HTTP/1.1\r\nHost: adapter\r\nNo colon here\r\n\r\n")

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"content-type: application/problem+json" in head
    assert b"connection: close" in head
    problem = json.loads(body)
    assert (problem["type"], problem["status"]) == ("urn:onceonly:problem:invalid-request", 400)


async def _headers_seen(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app that reads the whole body, then answers the header fields it got;
    on ``/early``, it answers 401 at once, before the body, as the hub's routes do."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/early":
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False) and message["type"] == "http.request"
    names = sorted(name.decode() for name, _ in scope["headers"])
    body = json.dumps(names).encode()
    length = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": length})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def reading() -> Iterator[tuple[str, int]]:
    """The bounded protocol serving an app that reads each body before it answers."""
    config = uvicorn.Config(
        _headers_seen,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
        **server_options(),
    )
    server = PromptServer(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the server stopped"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.005)
    yield "127.0.0.1", server.servers[0].sockets[0].getsockname()[1]
    server.stop()
    thread.join(timeout=5)


_CHUNKED_HEAD = (
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
)


def test_a_trailer_field_is_not_read_as_a_header_field(reading: tuple[str, int]) -> None:
    """RFC 9110 §6.5.1: trailer fields are not merged into the header section. uvicorn
    appended them to the request's header fields: an ``Authorization`` trailer was read
    as the request's credential (a hostile review: 200 from /v1/people/me)."""
    with socket.create_connection(reading, timeout=10) as sock:
        sock.sendall(_CHUNKED_HEAD + b"2\r\n{}\r\n0\r\nAuthorization: Bearer x\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200")
    seen = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert "authorization" not in seen  # before: it was there
    assert "transfer-encoding" in seen


def test_trailers_are_bounded_as_a_head_is(reading: tuple[str, int]) -> None:
    """Trailers streamed past MAX_HEAD_BYTES and never ended: the server closes the
    connection, answering 431, as for a head that large; uvicorn kept them all and
    waited for their end (100 MB of trailers grew a hub by 97 MB)."""
    with socket.create_connection(reading, timeout=10) as sock:
        sock.sendall(_CHUNKED_HEAD + b"2\r\n{}\r\n0\r\n")
        line = b"X-Pad: " + b"a" * 1000 + b"\r\n"
        answer = b""
        try:
            for _ in range(2 * MAX_HEAD_BYTES // len(line)):
                sock.sendall(line)
            sock.settimeout(5)
            while chunk := sock.recv(65536):  # before: a timeout, the server still reading
                answer += chunk
        except (BrokenPipeError, ConnectionResetError):
            return  # closed while we sent
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:80]
    assert b"chunk framing and trailers are larger" in answer or answer == b""


def test_a_body_in_one_byte_chunks_is_read_whole(reading: tuple[str, int]) -> None:
    """1-byte chunks cost 5 bytes of framing each: a 14,000-byte body so sent was cut
    off (no answer at all, the hub auditing its client as gone) when the framing was
    summed over the whole body (a hostile review). What is bounded is what comes
    between body bytes."""
    body = b"{" + b" " * 13998 + b"}"
    chunks = b"".join(b"1\r\n" + bytes([byte]) + b"\r\n" for byte in body) + b"0\r\n\r\n"
    message = _CHUNKED_HEAD + chunks
    with socket.create_connection(reading, timeout=10) as sock:
        for start in range(0, len(message), 4096):  # as a client writes it: in pieces
            sock.sendall(message[start : start + 4096])
            time.sleep(0.002)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:80]


def test_a_bad_chunk_after_an_early_answer_gets_no_second_answer(
    reading: tuple[str, int],
) -> None:
    """An app may answer before it reads the body; a parse error later in that body
    closes the connection, without a second answer to the same request (which a
    client that pipelines would take for its next request's): a hostile review saw
    401 then 400."""
    with socket.create_connection(reading, timeout=10) as sock:
        sock.sendall(
            b"POST /early HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"
        )
        time.sleep(0.3)
        sock.sendall(b"c\r\nzz\r\n")  # a bad chunk end, after the early answer
        sock.settimeout(2)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert answer.count(b"HTTP/1.1 ") == 1, answer
    assert answer.startswith(b"HTTP/1.1 401")


def _pipelined(reading: tuple[str, int], padding: int) -> bytes:
    """A whole request, and behind it in the same send a head with ``padding`` bytes of
    one field: all that comes back until the server closes (the second asks it to)."""
    first = b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
    second = b"GET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: "
    with socket.create_connection(reading, timeout=10) as sock:
        sock.sendall(first + second + b"a" * padding + b"\r\n\r\n")
        return closed_after(sock, time.monotonic())[0]


def test_a_head_pipelined_in_the_same_read_as_the_request_before_is_bounded_too(
    reading: tuple[str, int],
) -> None:
    """The head's bytes were counted per read from a read's start only: a head that came
    in the same read as a whole request before it was not counted, and one of up to a
    read's size (256 KiB) was served (a hostile review, helper-136). It is now counted
    as the parser reads it too: the request before is answered, the oversized one is
    not (an answer now would be read as the first's), and the connection closes."""
    answer = _pipelined(reading, 100 * 1024)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]
    assert answer.count(b"HTTP/1.1 ") == 1, answer[:400]  # before: a second 200


def test_a_head_within_the_bound_pipelined_behind_another_is_answered(
    reading: tuple[str, int],
) -> None:
    answer = _pipelined(reading, MAX_HEAD_BYTES - 1024)
    assert answer.count(b"HTTP/1.1 200 ") == 2, answer[:400]
    assert b'"x-pad"' in answer


def test_a_head_within_the_bound_is_not_refused_however_short_its_fields(
    reading: tuple[str, int],
) -> None:
    """The parser's count charged each field 4 bytes beside its name and value; one
    written without the optional space ("a:b\\r\\n") takes 3, so a head of 60,044 bytes
    in 12,000 such fields was refused 431 (helper-138). The count never exceeds the
    bytes sent."""
    fields = b"a:b\r\n" * 12_000
    head = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fields + b"\r\n"
    assert len(head) <= MAX_HEAD_BYTES
    with socket.create_connection(reading, timeout=10) as sock:
        sock.sendall(head)
        answer = closed_after(sock, time.monotonic())[0]
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]
