"""How the hub is served under uvicorn, and ASGI apps in background threads on loopback.

:func:`server_options` are the settings of every hub server (``onceonly serve``, the
demo, tests). uvicorn's httptools protocol buffers a request head (request line and
header fields) without any bound; :class:`BoundedHttpToolsProtocol` refuses one
larger than :data:`MAX_HEAD_BYTES` before it is all in memory, with 431 (RFC 6585
§5). The middleware's tighter limit (onceonly.hub.middleware.MAX_HEADER_BYTES) answers first,
as a problem with the request id, for any head that fits under this one. A head not
whole within the ``head_timeout`` setting is answered 408 (decision 0066), and one the
parser cannot read 400 (501 for a method it does not know), as problems (uvicorn's own
400 is plain text). It also
writes each answer's head together with its body, as the adapters are served
(onceonly.adapters.serving).

``serve_in_thread`` is used by ``onceonly demo`` (one process, four real HTTP
services) and by tests, over TLS when given a :class:`ServerTLS`.
"""

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from onceonly.adapters.serving import (
    HEAD_TIMEOUT,
    MALFORMED_DETAIL,
    UNKNOWN_CODING_DETAIL,
    UNKNOWN_METHOD_DETAIL,
    BoundedHeadProtocol,
    closing_fields,
    with_head_timeout,
)
from onceonly.hub.kit.problems import (
    HubError,
    InvalidRequest,
    MethodNotImplemented,
    RequestHeadersTooLarge,
    RequestTimeout,
    TransferCodingNotImplemented,
    render,
)
from onceonly.hub.middleware import MAX_HEADER_BYTES

MAX_HEAD_BYTES = 2 * MAX_HEADER_BYTES


def _whole_answer(error: HubError, status_line: bytes) -> bytes:
    """The whole answer to ``error``, written by the protocol itself (no app answered),
    on a connection it then closes (with ``Date`` and ``nosniff``, as every answer)."""
    response = render(error)
    head = [status_line]
    head += [name + b": " + value for name, value in response.raw_headers]
    return b"\r\n".join([*head, *closing_fields(), b"", bytes(response.body)])


class BoundedHttpToolsProtocol(BoundedHeadProtocol):
    """uvicorn's httptools protocol with a bound on each request head, writing each
    answer's head with its body (as the adapters are served): the adapters' protocol,
    its 431, 408, 400 and 501s the hub's problems."""

    max_head_bytes = MAX_HEAD_BYTES

    def head_too_large(self) -> bytes:
        detail = f"the request head is larger than {MAX_HEAD_BYTES} bytes"
        status_line = b"HTTP/1.1 431 Request Header Fields Too Large"
        return _whole_answer(RequestHeadersTooLarge(detail), status_line)

    def malformed(self, detail: str = MALFORMED_DETAIL) -> bytes:
        return _whole_answer(InvalidRequest(detail), b"HTTP/1.1 400 Bad Request")

    def not_implemented(self) -> bytes:
        error = MethodNotImplemented(UNKNOWN_METHOD_DETAIL)
        return _whole_answer(error, b"HTTP/1.1 501 Not Implemented")

    def coding_not_implemented(self) -> bytes:
        error = TransferCodingNotImplemented(UNKNOWN_CODING_DETAIL)
        return _whole_answer(error, b"HTTP/1.1 501 Not Implemented")

    def head_timed_out(self) -> bytes:
        detail = f"the request head was not whole within {self.head_timeout:g} seconds"
        return _whole_answer(RequestTimeout(detail), b"HTTP/1.1 408 Request Timeout")


def server_options(*, head_timeout: float = HEAD_TIMEOUT) -> dict[str, Any]:
    """uvicorn settings of every hub server, each head whole within ``head_timeout``
    seconds (the ``head_timeout`` setting); h11 (if chosen) bounds its heads' size too."""
    return {
        "http": with_head_timeout(BoundedHttpToolsProtocol, head_timeout),
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }


def loopback_socket(port: int = 0) -> socket.socket:
    """A bound (not yet listening) TCP socket on 127.0.0.1; port 0 picks a free one."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def cannot_listen(host: str, port: int) -> str | None:
    """Why a server could not listen on ``host``:``port`` now (the address in use, not
    this machine's, not allowed), or None. The socket is closed at once: uvicorn binds
    its own, but only after the application's start-up, so a port in use was found
    after the hub had logged that it was ready."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn
            probe.bind(address)
            probe.listen()
    except OSError as error:
        return error.strerror or str(error)
    return None


def url_of(sock: socket.socket, *, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"


@dataclass(frozen=True)
class ServerTLS:
    """TLS for :func:`serve_in_thread`: the server's certificate chain and key (PEM
    files) and, to ask clients for a certificate, the CA that must have issued it."""

    certfile: Path
    keyfile: Path
    client_ca: Path | None = None

    def options(self) -> dict[str, Any]:
        """uvicorn's settings for this."""
        if self.client_ca is None:
            return {"ssl_certfile": str(self.certfile), "ssl_keyfile": str(self.keyfile)}
        return {
            "ssl_certfile": str(self.certfile),
            "ssl_keyfile": str(self.keyfile),
            "ssl_ca_certs": str(self.client_ca),
            "ssl_cert_reqs": ssl.CERT_REQUIRED,
        }


class PromptServer(uvicorn.Server):
    """uvicorn's server that stops as soon as it is told: uvicorn's main loop looks at
    ``should_exit`` every 0.1 s; this one also wakes when :meth:`stop` is called from
    another thread. It still ticks every 0.1 s (the Date header, the request limits)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown, waiting in steps of 10 ms rather than 100 ms: stop
        accepting, ask every connection to finish, wait for their answers and tasks
        (at most ``timeout_graceful_shutdown``, then cancel them), then the lifespan's
        shutdown."""
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        try:
            async with asyncio.timeout(self.config.timeout_graceful_shutdown):
                while (
                    self.server_state.connections or self.server_state.tasks
                ) and not self.force_exit:
                    await asyncio.sleep(0.01)
        except TimeoutError:
            for task in self.server_state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()

    def stop(self) -> None:
        """Stop serving (from any thread); the lifespan's shutdown runs as usual."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(wake.set)


@contextmanager
def serve_in_thread(
    app: FastAPI,
    sock: socket.socket | None = None,
    *,
    tls: ServerTLS | None = None,
    proxy_headers: bool = False,
) -> Iterator[str]:
    """Serve ``app`` until the block ends; yield its base URL once it accepts requests
    (``https://`` with ``tls``). Clients' addresses are the connections' own, unless
    ``proxy_headers`` trusts ``X-Forwarded-For`` from loopback (as ``onceonly serve
    --proxy-headers`` does from its proxy): for tests that play many sources."""
    sock = sock or loopback_socket()
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=2,
        # As `onceonly serve` without --proxy-headers: no proxy stands in front, so an
        # X-Forwarded-For from loopback is the client's word, never its address (else a
        # client resets its sign-in throttle by changing it).
        proxy_headers=proxy_headers,
        **server_options(),
        **(tls.options() if tls is not None else {}),
    )
    server = PromptServer(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the service did not start (see the log above)")
        time.sleep(0.01)
    try:
        yield url_of(sock, scheme="https" if tls is not None else "http")
    finally:
        server.stop()
        thread.join(timeout=10)
        sock.close()
