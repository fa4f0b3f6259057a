"""A lean HTTP/1.1 client for one kind of call: POST a body, read the whole answer.

The hub's hot path makes one outbound call per exchange (to the owner's adapter).
Through httpx that call builds httpx's and httpcore's request and response models,
runs h11's state machine and reads the socket through anyio's stream: about as much
CPU as the rest of the exchange's protocol work. Here a connection is an asyncio
protocol: the request head is written in one piece, the answer parsed by httptools
(llhttp, in C, as uvicorn does), and the body handed back whole when the parser says
the message is complete. Idle connections are kept per origin in a stack, taken in
O(1) (as :class:`onceonly.hub.kit.keepalive.KeepAliveTransport` does for httpx), and
a connection the server closed is known from its protocol's callbacks, without a
system call.

Failures are raised as httpx's exceptions of the same meaning (``ConnectError``,
``WriteError``, ``ReadError``, ``RemoteProtocolError``), so a caller handles both
clients alike. There is no timeout here: the caller bounds the whole call (connect,
send, the wait for a free connection, reading) with one deadline, which cancels the
call and drops its connection.

A pool given a peer rule (a production hub's, :func:`~onceonly.hub.kit.base_urls.peer_rule`)
judges the address each new connection reached before it sends anything, TLS's first
message included: TCP is connected without TLS, the socket's peer address judged, and
TLS started on the same connection (decision 0071). A refused connection is closed at
once and raised as :class:`AdapterAddressRefused`, a ``ConnectError``.
"""

import asyncio
import logging
import ssl
import time
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import httptools
import httpx

from onceonly.hub.kit.base_urls import PeerRule

log = logging.getLogger("onceonly.outbound")

# A server that sends more header bytes than this is not an adapter answering a query.
MAX_HEAD_BYTES = 64 * 1024


class AdapterAddressRefused(httpx.ConnectError):
    """A direct call to an adapter reached an address the hub does not talk to (its own
    machine or link): closed before any byte was sent. An unreachable adapter, to the
    caller; its class name is what the deliverer records and the exchange logs."""


def _host_of(name: object) -> str | None:
    """The address in a socket's ``getpeername()``/``getsockname()`` tuple (None: none)."""
    return name[0] if isinstance(name, tuple) and name and isinstance(name[0], str) else None


def judge_peer(rule: PeerRule, peer: object, local: object, *, host: str, port: int) -> None:
    """Raise :class:`AdapterAddressRefused` (and log why, naming the adapter's host and
    the address, never a subject or token) unless ``rule`` lets the hub talk to ``peer``,
    a connected socket's ``getpeername()``, from ``local``, its ``getsockname()``
    (address tuples; None if it had none: refused)."""
    address, own = _host_of(peer), _host_of(local)
    if address is None:
        problem: str | None = "the connection has no peer address"
    elif own is None:
        problem = "the connection has no local address"
    else:
        problem = rule(address, own)
    if problem is None:
        return
    log.warning(
        "adapter-address-refused: the connection to %s port %d was closed before"
        " anything was sent: %s (decision 0071)",
        host,
        port,
        problem,
    )
    raise AdapterAddressRefused(f"adapter-address-refused: {problem}")


class _NotOurs(Exception):
    """Raised inside a parser callback: the answer is not one this client reads."""


@dataclass(frozen=True)
class Answer:
    """A whole answer: its status and body (decoded if the server compressed it).

    ``oversized``: the body was longer than the caller's limit; ``body`` then holds
    only its first ``limit`` bytes (the rest was read and dropped)."""

    status: int
    body: bytes
    oversized: bool = False


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int
    authority: str  # the Host header's value


@dataclass(frozen=True)
class _Target:
    origin: _Origin
    head_start: bytes  # "POST <path> HTTP/1.1\r\nHost: ...\r\n"


def _target(url: str) -> _Target:
    """The origin and request line of ``url``, as httpx writes them: the host in IDNA,
    the path and query percent-encoded (an adapter URL may hold any non-space
    character). Credentials in the URL are for httpx (:func:`keepalive.lean_posts`
    leaves such URLs to it), never dropped here."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise httpx.UnsupportedProtocol(f"not a usable URL: {error}") from None
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise httpx.UnsupportedProtocol(f"not an http(s) URL: {parsed.scheme!r}")
    if parsed.userinfo:
        raise httpx.UnsupportedProtocol("a URL with credentials goes through httpx")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = parsed.raw_host.decode("ascii")
    authority = parsed.netloc.decode("ascii")
    path = parsed.raw_path.decode("ascii") or "/"
    origin = _Origin(parsed.scheme, host, port, authority)
    head = f"POST {path} HTTP/1.1\r\nHost: {authority}\r\n".encode("ascii")
    return _Target(origin=origin, head_start=head)


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; one request at a time."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Answer] | None = None
        self._limit = 0
        self._body: list[bytes] = []
        self._size = 0
        self._head_size = 0
        self._read = 0  # every byte read for this answer: head, framing, body, trailers
        self._answered = False  # the final answer is complete: any byte after it is stray
        self._framed = False  # Content-Length or chunked: the body's end is in the data
        self._headers_done = False
        self._encoding = b""
        self.closed = False
        self.idle_since = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def upgraded(self, transport: asyncio.BaseTransport) -> None:
        """TLS runs on the connection now (``loop.start_tls``, which does not call
        :meth:`connection_made` again): write and close through its transport."""
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():  # nothing asked: not HTTP as we know it
            self.abort()
            return
        self._read += len(data)
        if self._read > 2 * self._limit + 2 * MAX_HEAD_BYTES:
            # Far more than an answer within the limit can take, even in small chunks with
            # trailers: stop reading (an endless body or trailer would run to the deadline).
            if self._headers_done:
                self.abort()
                self._complete(overrun=True)  # oversized: the caller refuses it
            else:
                self._fail(httpx.RemoteProtocolError("the answer's head is too large"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the server switched protocols unasked"))
            return
        except httptools.HttpParserError as error:
            self._fail(httpx.RemoteProtocolError(f"not an HTTP/1.1 answer: {error}"))
            return
        if not self._headers_done:  # only bytes read before the head's end count for it
            self._head_size += len(data)
            if self._head_size > MAX_HEAD_BYTES:
                self._fail(httpx.RemoteProtocolError("the answer's head is too large"))

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None or self._waiter.done():
            return
        if self._headers_done and not self._framed and exc is None:
            self._complete()  # RFC 9112 §6.3 item 8: read to close (a reset is no close)
            return
        self._fail(httpx.ReadError("the server closed the connection before answering"))

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self._answered:  # a second answer to one request: the connection is out of step
            raise _NotOurs("the server wrote more than one answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"content-length":
            self._framed = True
        elif lowered == b"transfer-encoding":
            if value.strip().lower() != b"chunked":  # RFC 9112 §6.1: chunked is last
                raise _NotOurs("a transfer coding other than chunked")
            self._framed = True
        elif lowered == b"content-encoding":
            self._encoding = value.strip().lower()

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        room = self._limit - self._size
        if room > 0:
            self._body.append(body[:room])
        self._size += len(body)

    def on_message_complete(self) -> None:
        if self._answered:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (RFC 9110 §15.2): the final one follows
            read = self._read  # interim answers count towards the bound on what is read
            self._start()
            self._read = read
            return
        if not self._parser.should_keep_alive():
            self.closed = True
            assert self._transport is not None
            self._transport.close()
        self._complete()

    # the request

    async def exchange(self, data: bytes, *, limit: int) -> Answer:
        """Write one request (head and body in ``data``) and wait for its whole answer."""
        if self.closed or self._transport is None or self._transport.is_closing():
            raise httpx.WriteError("the connection is closed")
        self._limit = limit
        self._start()
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(data)
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def abort(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    def _start(self) -> None:
        self._body, self._size, self._head_size = [], 0, 0
        self._framed, self._headers_done, self._encoding = False, False, b""
        self._read, self._answered = 0, False

    def _complete(self, *, overrun: bool = False) -> None:
        self._answered = True
        if self._waiter is None or self._waiter.done():
            return
        oversized = overrun or self._size > self._limit
        body = b"".join(self._body)
        if not oversized:
            try:
                body = _decoded(body, self._encoding, limit=self._limit)
            except zlib.error:
                self._fail(httpx.DecodingError("the answer's compressed body does not decode"))
                return
            oversized = len(body) > self._limit
        answer = Answer(
            status=self._parser.get_status_code(), body=body[: self._limit], oversized=oversized
        )
        self._waiter.set_result(answer)

    def _fail(self, error: Exception) -> None:
        self.abort()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)


def _decoded(body: bytes, encoding: bytes, *, limit: int) -> bytes:
    """RFC 9110 §8.4.1: the codings httpx would have decoded by default, decoded to at
    most ``limit + 1`` bytes (longer is oversized: a small compressed body must not
    become a large one in memory)."""
    if encoding in (b"", b"identity"):
        return body
    if encoding in (b"gzip", b"x-gzip"):
        return _inflate(body, zlib.MAX_WBITS | 16, limit)
    if encoding == b"deflate":
        try:
            return _inflate(body, zlib.MAX_WBITS, limit)
        except zlib.error:
            return _inflate(body, -zlib.MAX_WBITS, limit)
    raise zlib.error(f"unsupported content coding {encoding!r}")


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    out = inflater.decompress(body, limit + 1)
    if len(out) <= limit and not inflater.eof:
        raise zlib.error("the compressed body ends early")
    return out


class Http1Pool:
    """POST to any origin over kept-alive HTTP/1.1 connections, at most as many at once as
    ``slots`` allows (a semaphore the caller may share with another client).

    Example::

        pool = Http1Pool(ssl_context=ssl.create_default_context(), slots=asyncio.Semaphore(100))
        async with asyncio.timeout(5):
            answer = await pool.post(url, headers=[("Content-Type", "application/json")],
                                     body=b"{}", limit=1 << 20)
        await pool.aclose()
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        slots: asyncio.Semaphore,
        keepalive_expiry: float = 5.0,
        peers: PeerRule | None = None,
    ) -> None:
        self._ssl = ssl_context
        self._slots = slots
        self._expiry = keepalive_expiry
        self._peers = peers  # judges each new connection's peer address (decision 0071)
        self._targets: dict[str, _Target] = {}
        self._idle: dict[_Origin, deque[_Connection]] = {}

    async def post(
        self, url: str, *, headers: Iterable[tuple[str, str]], body: bytes, limit: int
    ) -> Answer:
        """The whole answer to POSTing ``body`` to ``url``; a body past ``limit`` bytes is
        read and dropped (``Answer.oversized``). Raises httpx's transport errors."""
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = _target(url)
            if len(self._targets) > 1024:  # adapters are few; a bound against surprises
                self._targets.clear()
        data = _request(target.head_start, headers, body)
        async with self._slots:
            connection = await self._connection(target.origin)
            try:
                answer = await connection.exchange(data, limit=limit)
            except BaseException:  # cancelled, or failed: never reused
                connection.abort()
                raise
            if not connection.closed:
                connection.idle_since = time.monotonic()
                self._idle.setdefault(target.origin, deque()).append(connection)
            return answer

    async def _connection(self, origin: _Origin) -> _Connection:
        """The most recently used idle connection that is still good, or a new one."""
        idle = self._idle.get(origin)
        if idle:
            oldest_kept = time.monotonic() - self._expiry
            while idle and idle[0].idle_since < oldest_kept:
                idle.popleft().abort()
            while idle:
                connection = idle.pop()
                if not connection.closed:
                    return connection
        return await self._connect(origin)

    async def _connect(self, origin: _Origin) -> _Connection:
        """A new connection: TCP, its peer judged (with a rule), then TLS for https."""
        loop = asyncio.get_running_loop()
        try:
            transport, connection = await loop.create_connection(
                _Connection, origin.host, origin.port
            )
        except OSError as error:
            raise httpx.ConnectError(str(error) or type(error).__name__) from error
        try:
            if self._peers is not None:
                peer = transport.get_extra_info("peername")
                local = transport.get_extra_info("sockname")
                judge_peer(self._peers, peer, local, host=origin.host, port=origin.port)
            if origin.scheme == "https":
                secure = await loop.start_tls(
                    transport, connection, self._ssl, server_hostname=origin.host
                )
                if secure is None:  # typeshed allows it; the loop returns one or raises
                    raise httpx.ConnectError("TLS could not be started")
                connection.upgraded(secure)
        except (OSError, ssl.SSLError) as error:
            connection.abort()
            raise httpx.ConnectError(str(error) or type(error).__name__) from error
        except BaseException:  # refused, or cancelled by the caller's deadline
            connection.abort()
            raise
        return connection

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.abort()


def _request(head_start: bytes, headers: Iterable[tuple[str, str]], body: bytes) -> bytes:
    lines = [head_start]
    for name, value in headers:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise httpx.LocalProtocolError("a header holds a line break")
        lines.append(f"{name}: {value}\r\n".encode("latin-1"))
    lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
    lines.append(body)
    return b"".join(lines)
