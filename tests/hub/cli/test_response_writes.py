"""An answer's head goes out with its body in one write (onceonly.adapters.serving,
as the adapters and the hub are served).

uvicorn writes a head and a body separately; the hub's protocol holds the head until
the body's write or the event loop's next step. The unit tests count the writes on a
transport; the wire tests serve a real app on loopback and read the raw bytes, a
streamed answer included, whose head must not wait for its late body.
"""

import asyncio
import socket
import time
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from onceonly.adapters.serving import HeadWithBody as _HeadWithBody
from onceonly.hub.cli.servers import loopback_socket, serve_in_thread


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return f"extra {name}"


def test_a_head_and_its_body_are_one_write() -> None:
    async def run() -> list[bytes]:
        transport = _Transport()
        wrapped = _HeadWithBody(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        wrapped.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        assert transport.writes == []
        wrapped.write(b"ok")
        wrapped.write(b"more")  # later writes go straight through
        await asyncio.sleep(0)
        assert wrapped.get_extra_info("peername") == "extra peername"
        return transport.writes

    assert asyncio.run(run()) == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", b"more"]


def test_a_head_without_a_body_in_the_same_step_goes_out_at_the_next() -> None:
    async def run() -> list[bytes]:
        transport = _Transport()
        wrapped = _HeadWithBody(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        wrapped.write(b"head")
        await asyncio.sleep(0)
        assert transport.writes == [b"head"]
        wrapped.write(b"chunk")
        return transport.writes

    assert asyncio.run(run()) == [b"head", b"chunk"]


def test_close_writes_what_is_held_first_and_a_closed_transport_gets_nothing() -> None:
    async def run() -> tuple[list[bytes], list[bytes]]:
        loop = asyncio.get_running_loop()
        closing, lost = _Transport(), _Transport()
        first = _HeadWithBody(closing, loop)  # type: ignore[arg-type]
        first.write(b"head")
        first.close()
        second = _HeadWithBody(lost, loop)  # type: ignore[arg-type]
        second.write(b"head")
        lost.closed = True  # the client went away before the next step
        await asyncio.sleep(0)
        return closing.writes, lost.writes

    assert asyncio.run(run()) == ([b"head"], [])


def _app() -> FastAPI:
    app = FastAPI()

    @app.api_route("/now", methods=["GET", "HEAD"])
    async def now() -> dict[str, str]:
        return {"answer": "at once"}

    @app.get("/late")
    async def late() -> StreamingResponse:
        async def chunks() -> Any:
            await asyncio.sleep(2)
            yield b"late body"

        return StreamingResponse(chunks(), media_type="text/plain")

    return app


def _get(url: str, path: str, *, method: str = "GET") -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)))
    conn.sendall(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return conn


def test_over_the_wire_an_answer_comes_whole_and_a_streamed_head_does_not_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[bytes] = []  # what the served protocol's cycles write, as they write it
    original = _HeadWithBody.write

    def counted(self: _HeadWithBody, data: bytes) -> None:
        sent.append(data)
        original(self, data)

    monkeypatch.setattr(_HeadWithBody, "write", counted)
    with serve_in_thread(_app(), loopback_socket()) as url:
        with _get(url, "/now") as conn:
            answer = b""
            while not answer.endswith(b'{"answer":"at once"}'):
                answer += conn.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert len(sent) == 2  # through the hub's transport: held, then written together
        sent.clear()
        with _get(url, "/now", method="HEAD") as conn:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += conn.recv(65536)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert sent == []  # a HEAD answer is only a head: nothing to wait for, not held
        with _get(url, "/late") as conn:
            conn.settimeout(5)
            started = time.monotonic()
            head = conn.recv(65536)
            waited = time.monotonic() - started
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"late body" not in head
            assert waited < 1.5, waited  # the body comes 2 s after the head (margin: a busy CI)
            rest = b""
            while b"late body" not in rest:
                rest += conn.recv(65536)
