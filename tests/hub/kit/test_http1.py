"""The lean HTTP/1.1 client (onceonly.hub.kit.http1) against real servers on loopback:
answers framed every way HTTP/1.1 allows, connections kept and never reused once
closed, concurrency bounded, and failures raised as httpx's exceptions. TLS with a
department's CA and mutual TLS: tests/hub/exchange/test_adapter_tls.py."""

import asyncio
import gzip
import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from onceonly.hub.kit.http1 import Answer, Http1Pool
from onceonly.hub.kit.keepalive import KeepAliveTransport, lean_posts

from tests.hub_testing import serve

# An answer per request, from the request's bytes; the server keeps the connection
# unless the answer says "connection: close", or is None (closed without answering).
Script = Callable[[bytes], bytes | None]


@asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[tuple[str, list[int]]]:
    """A raw HTTP/1.1 server on loopback; yields its URL and the peers' ports, one per
    request (so that a test sees which requests shared a connection)."""
    peers: list[int] = []
    handlers: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        port = writer.get_extra_info("peername")[1]
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = _content_length(head)
                request = head + await reader.readexactly(length)
                peers.append(port)
                answer = script(request)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if b"connection: close" in answer.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/v1/query", peers
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _answer(body: bytes, *, headers: bytes = b"", status: int = 200) -> bytes:
    return b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n%s\r\n%s" % (status, len(body), headers, body)


def _pool(slots: int = 10) -> Http1Pool:
    return Http1Pool(
        ssl_context=httpx.create_ssl_context(), slots=asyncio.Semaphore(slots), keepalive_expiry=5
    )


async def _post(pool: Http1Pool, url: str, body: bytes = b"{}", limit: int = 1000) -> Answer:
    return await pool.post(url, headers=[("X-Request-Id", "r1")], body=body, limit=limit)


def test_sends_the_head_and_body_and_reads_a_length_framed_answer() -> None:
    seen: list[bytes] = []

    def script(request: bytes) -> bytes:
        seen.append(request)
        return _answer(b'{"ok":true}', status=201)

    async def run() -> Answer:
        async with scripted(script) as (url, _):
            pool = _pool()
            try:
                return await _post(pool, url, body=b'{"a":1}')
            finally:
                await pool.aclose()

    assert asyncio.run(run()) == Answer(status=201, body=b'{"ok":true}')
    head, _, body = seen[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/query HTTP/1.1"
    assert lines[1].startswith(b"Host: 127.0.0.1:")
    assert b"X-Request-Id: r1" in lines
    assert b"Content-Length: 7" in lines
    assert body == b'{"a":1}'


def test_keeps_one_connection_for_posts_one_after_another() -> None:
    async def run() -> list[int]:
        async with scripted(lambda _: _answer(b"{}")) as (url, peers):
            pool = _pool()
            for _ in range(4):
                await _post(pool, url)
            await pool.aclose()
            return peers

    assert len(set(asyncio.run(run()))) == 1


def test_never_reuses_a_connection_the_server_said_it_closes() -> None:
    def script(_: bytes) -> bytes:
        return _answer(b"{}", headers=b"connection: close\r\n")

    async def run() -> list[int]:
        async with scripted(script) as (url, peers):
            pool = _pool()
            for _ in range(3):
                assert (await _post(pool, url)).status == 200
            await pool.aclose()
            return peers

    assert len(set(asyncio.run(run()))) == 3


def test_reads_a_chunked_answer_and_one_delimited_by_the_close() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    to_close = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it"
    answers = iter([chunked, to_close])

    async def run() -> list[bytes]:
        async with scripted(lambda _: next(answers)) as (url, _):
            pool = _pool()
            bodies = [(await _post(pool, url)).body for _ in range(2)]
            await pool.aclose()
            return bodies

    assert asyncio.run(run()) == [b"abcde", b"all of it"]


def test_decodes_a_gzip_answer() -> None:
    body = gzip.compress(b'{"record":{}}')

    async def run() -> bytes:
        async with scripted(lambda _: _answer(body, headers=b"content-encoding: gzip\r\n")) as (
            url,
            _,
        ):
            pool = _pool()
            answer = await _post(pool, url)
            await pool.aclose()
            return answer.body

    assert asyncio.run(run()) == b'{"record":{}}'


def test_an_answer_past_the_limit_is_flagged_and_its_connection_still_reused() -> None:
    sizes = iter([5000, 10])

    async def run() -> tuple[list[Answer], list[int]]:
        async with scripted(lambda _: _answer(b"x" * next(sizes))) as (url, peers):
            pool = _pool()
            answers = [await _post(pool, url, limit=100) for _ in range(2)]
            await pool.aclose()
            return answers, peers

    answers, peers = asyncio.run(run())
    assert answers[0].oversized
    assert answers[0].body == b"x" * 100
    assert answers[1] == Answer(status=200, body=b"x" * 10)
    assert len(set(peers)) == 1


def test_a_server_closing_without_answering_is_a_read_error() -> None:
    async def run() -> None:
        async with scripted(lambda _: None) as (url, _):
            pool = _pool()
            try:
                await _post(pool, url)
            finally:
                await pool.aclose()

    with pytest.raises(httpx.ReadError):
        asyncio.run(run())


def test_an_answer_that_is_not_http_is_a_remote_protocol_error() -> None:
    async def run() -> None:
        async with scripted(lambda _: b"SMTP ready\r\n\r\n") as (url, _):
            pool = _pool()
            try:
                await _post(pool, url)
            finally:
                await pool.aclose()

    with pytest.raises(httpx.RemoteProtocolError):
        asyncio.run(run())


def test_a_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def run() -> None:
        await _post(_pool(), f"http://127.0.0.1:{port}/")

    with pytest.raises(httpx.ConnectError):
        asyncio.run(run())


def test_a_cancelled_post_drops_its_connection_and_frees_its_slot() -> None:
    answers = iter([b"", _answer(b"{}")])  # the first request is never answered

    async def run() -> tuple[Answer, list[int]]:
        def script(_: bytes) -> bytes:
            return next(answers)

        async with scripted(script) as (url, peers):
            pool = _pool(slots=1)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await _post(pool, url)
            answer = await _post(pool, url)
            await pool.aclose()
            return answer, peers

    answer, peers = asyncio.run(run())
    assert answer.status == 200
    assert len(set(peers)) == 2  # the cancelled post's connection was not reused


def test_waits_for_a_free_slot() -> None:
    async def run() -> int:
        async with scripted(lambda _: _answer(b"{}")) as (url, peers):
            pool = _pool(slots=2)
            await asyncio.gather(*(_post(pool, url) for _ in range(8)))
            await pool.aclose()
            return len(set(peers))

    assert asyncio.run(run()) <= 2


def test_a_header_with_a_line_break_is_refused_before_sending() -> None:
    async def run() -> None:
        pool = _pool()
        await pool.post(
            "http://127.0.0.1:9/", headers=[("X-Evil", "a\r\nHost: b")], body=b"", limit=10
        )

    with pytest.raises(httpx.LocalProtocolError):
        asyncio.run(run())


def test_lean_posts_only_behind_the_hubs_own_transport() -> None:
    async def run() -> tuple[object, object, object]:
        async with (
            httpx.AsyncClient(transport=KeepAliveTransport()) as own,
            httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(200))) as mock,
            httpx.AsyncClient(
                transport=KeepAliveTransport(),
                mounts={
                    "http://proxied.example": httpx.MockTransport(lambda _: httpx.Response(200))
                },
            ) as proxied,
        ):
            return (
                lean_posts(own, "http://adapter.example/q"),
                lean_posts(mock, "http://adapter.example/q"),
                lean_posts(proxied, "http://proxied.example/q"),
            )

    own, mock, proxied = asyncio.run(run())
    assert isinstance(own, Http1Pool)
    assert mock is None
    assert proxied is None


def test_posts_to_a_real_asgi_server() -> None:
    app = FastAPI()

    @app.post("/v1/items/x/records/query")
    async def query(request: Request) -> Response:
        return Response(await request.body(), media_type="application/json")

    with serve(app) as url:

        async def run() -> Answer:
            async with httpx.AsyncClient(transport=KeepAliveTransport()) as client:
                pool = lean_posts(client, f"{url}/v1/items/x/records/query")
                assert pool is not None
                return await pool.post(
                    f"{url}/v1/items/x/records/query", headers=[], body=b'{"a":1}', limit=100
                )

        assert asyncio.run(run()) == Answer(status=200, body=b'{"a":1}')


# --- what a broken or hostile adapter may send (the hostile review of this client) ---


def _one(script: Script, *, limit: int = 1000, path: str = "") -> Answer:
    async def run() -> Answer:
        async with scripted(script) as (url, _):
            pool = _pool()
            try:
                return await _post(pool, url + path, limit=limit)
            finally:
                await pool.aclose()

    return asyncio.run(run())


def test_an_answer_longer_than_the_head_limit_in_one_write_is_read_whole() -> None:
    """Body bytes that arrive with the head's end never count towards the head's bound."""
    body = b'{"pad":"' + b"a" * 200_000 + b'"}'
    assert _one(lambda _: _answer(body), limit=1 << 20) == Answer(status=200, body=body)


def test_a_compressed_answer_is_decoded_only_up_to_the_limit() -> None:
    """A gzip bomb: 5 MB of zeros in a few kilobytes never becomes 5 MB in memory."""
    bomb = gzip.compress(b"0" * 5_000_000)
    answer = _one(lambda _: _answer(bomb, headers=b"content-encoding: gzip\r\n"), limit=1000)
    assert answer.oversized
    assert len(answer.body) == 1000


def test_a_truncated_compressed_answer_is_a_decoding_error() -> None:
    cut = gzip.compress(b'{"record":{}}' * 50)[:-12]
    with pytest.raises(httpx.DecodingError):
        _one(lambda _: _answer(cut, headers=b"content-encoding: gzip\r\n"))


def test_a_second_answer_in_the_same_segment_never_answers_the_next_request() -> None:
    """A stray answer's head right behind the real answer (a buggy adapter or proxy):
    reused, the connection would answer the next request with the stray answer, whose
    body the server writes later (another person's record). The connection is dropped
    instead, and the next request gets its own answer on a new one."""
    stray_head = b"HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n"
    seen: list[list[int]] = []

    def script(_: bytes) -> bytes:
        peers = seen[0]
        if len(peers) == 1:
            return _answer(b'{"for":"A"}') + stray_head
        if peers[-1] == peers[0]:  # the first connection, reused: the stray's body
            return b'{"for":"stray"}'
        return _answer(b'{"for":"B"}')

    async def run() -> tuple[list[bytes], list[int]]:
        async with scripted(script) as (url, peers):
            seen.append(peers)
            pool = _pool()
            bodies = [(await _post(pool, url)).body for _ in range(2)]
            await pool.aclose()
            return bodies, peers

    bodies, peers = asyncio.run(run())
    assert bodies == [b'{"for":"A"}', b'{"for":"B"}']
    assert len(set(peers)) == 2


def test_an_endless_trailer_stops_at_the_bound_on_what_is_read() -> None:
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nx-t: "
    answer = _one(lambda _: head + b"a" * 400_000, limit=1000)
    assert answer.oversized


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n",
    ],
    ids=["transfer-coding", "upgrade"],
)
def test_answers_this_client_does_not_read_are_protocol_errors(head: bytes) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        _one(lambda _: head)


def test_a_reset_while_reading_to_the_close_is_a_read_error() -> None:
    """An unframed body ends at the connection's close; a reset is no close: the part
    read so far is not the answer."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n" + b'{"record":')
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def run() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            pool = _pool()
            try:
                await _post(pool, f"http://127.0.0.1:{port}/q")
            finally:
                await pool.aclose()

    with pytest.raises(httpx.ReadError):
        asyncio.run(run())


def test_a_path_is_percent_encoded_as_httpx_encodes_it() -> None:
    seen: list[bytes] = []

    def script(request: bytes) -> bytes:
        seen.append(request.split(b"\r\n", 1)[0])
        return _answer(b"{}")

    _one(script, path='/d\u00e9pt/a"b')
    assert seen == [b"POST /v1/query/d%C3%A9pt/a%22b HTTP/1.1"]


def test_a_url_with_credentials_is_left_to_httpx() -> None:
    async def run() -> object:
        async with httpx.AsyncClient(transport=KeepAliveTransport()) as own:
            return lean_posts(own, "http://user:secret@adapter.example/q")

    assert asyncio.run(run()) is None
