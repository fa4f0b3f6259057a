"""An httpx transport that keeps idle HTTP/1.1 connections per origin, taken in O(1).

httpx's default transport is httpcore's connection pool, which on every request and
on every response's close walks all its connections: for each idle one it asks the
socket whether it became readable (a system call through anyio's attribute table)
and counts the idle ones again (quadratic). With the dozens of connections that
concurrent calls to one adapter keep open, that walk costs more CPU than sending the
request. Here each origin has a stack of idle connections: a request takes the most
recently used one, checks only that one (expired, or closed by the server), and puts
it back when its answer has been read. Connections are httpcore's own
(``httpcore.AsyncHTTPConnection``), so HTTP, TLS and timeouts behave as with the
default transport, and errors are raised as the same httpx exceptions.

A request marked as a direct call to an adapter (the :data:`ADAPTER_CALL` extension,
which :func:`onceonly.hub.kit.deadline.post_within` sets) goes over connections whose
peer address was judged by the transport's ``adapter_peers`` rule when they were made,
before TLS (a network backend's ``connect_tcp``; decision 0071); they are kept apart
from the unjudged connections of other requests (the OpenID provider's). A transport
mounted for a proxy ignores the mark (its peer is the proxy); httpx mounts none from
the environment for a client given its own transport.
"""

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator

import httpcore
import httpx

from onceonly.hub.kit.base_urls import PeerRule
from onceonly.hub.kit.http1 import Http1Pool, judge_peer

# A request extension: this request is a direct call to a department's adapter, whose
# connection's peer address the transport judges (decision 0071). Other transports
# (httpcore's, a proxy's) ignore extensions they do not know.
ADAPTER_CALL = "onceonly.adapter_call"

# httpcore's errors as httpx raises them (the most specific first).
_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


_Key = tuple[bytes, bytes, int, bool]


def _key(origin: httpcore.Origin, judged: bool) -> _Key:
    # httpcore's Origin is not hashable; a judged connection serves adapter calls only
    return origin.scheme, origin.host, origin.port, judged


class _JudgedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's own network backend, but a new TCP connection's peer address is judged
    by ``rule`` before httpcore writes on it or starts TLS: one check per connection."""

    def __init__(self, rule: PeerRule) -> None:
        self._inner = httpcore.AnyIOBackend()  # httpcore's own under asyncio and uvloop
        self._rule = rule

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        try:
            sock = stream.get_extra_info("socket")
            peer, local = (sock.getpeername(), sock.getsockname()) if sock else (None, None)
            judge_peer(self._rule, peer, local, host=host, port=port)
        except BaseException:
            await stream.aclose()
            raise
        return stream

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("an adapter call goes over TCP")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as error:
        for theirs, ours in _ERRORS:
            if isinstance(error, theirs):
                raise ours(str(error)) from error
        raise


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 to any origin, at most ``max_connections`` requests at once (so at most
    as many connections), idle connections kept ``keepalive_expiry`` seconds.

    Example::

        client = httpx.AsyncClient(transport=KeepAliveTransport(verify=True))
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        max_connections: int = 100,
        keepalive_expiry: float = 5.0,
        adapter_peers: PeerRule | None = None,
    ) -> None:
        self._ssl = httpx.create_ssl_context(verify=verify)
        self._slots = asyncio.Semaphore(max_connections)
        self._expiry = keepalive_expiry
        # per origin and judged or not, oldest first; here only between two requests
        self._idle: dict[_Key, deque[httpcore.AsyncHTTPConnection]] = {}
        # adapter calls' connections: peer addresses judged (None: a development hub's)
        self._judged = None if adapter_peers is None else _JudgedBackend(adapter_peers)
        # the hot path's POSTs to adapters, below httpx's models (kit.http1), within the
        # same slots; every connection of theirs is judged
        self.posts = Http1Pool(
            ssl_context=self._ssl,
            slots=self._slots,
            keepalive_expiry=keepalive_expiry,
            peers=adapter_peers,
        )
        self.direct_urls: dict[str, bool] = {}  # by lean_posts: URLs that no proxy takes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        target = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        origin = target.url.origin
        key = _key(origin, self._judged is not None and bool(request.extensions.get(ADAPTER_CALL)))
        await self._take_slot(request)
        try:
            connection = await self._connection_for(origin, key)
            with _as_httpx_errors():
                answer = await connection.handle_async_request(target)
        except BaseException:
            self._slots.release()  # httpcore has closed a connection it could not use
            raise
        assert isinstance(answer.stream, AsyncIterable)
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_Body(answer.stream, release=lambda: self._release(key, connection)),
            extensions=answer.extensions,
        )

    async def _take_slot(self, request: httpx.Request) -> None:
        if not self._slots.locked():  # a free slot: taken at once, without a timer
            await self._slots.acquire()
            return
        timeout = request.extensions.get("timeout", {}).get("pool")
        try:
            async with asyncio.timeout(timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no connection slot became free in time") from None

    async def _connection_for(
        self, origin: httpcore.Origin, key: _Key
    ) -> httpcore.AsyncHTTPConnection:
        """The most recently used idle connection that is still good, or a new one (its
        peer judged when ``key`` is an adapter call's)."""
        idle = self._idle.get(key)
        while idle and idle[0].has_expired():  # the oldest first: closed, not left open
            await idle.popleft().aclose()
        while idle:
            connection = idle.pop()
            if connection.is_idle() and not connection.has_expired():
                return connection
            await connection.aclose()  # expired, or the server closed it
        return httpcore.AsyncHTTPConnection(
            origin,
            ssl_context=self._ssl,
            keepalive_expiry=self._expiry,
            network_backend=self._judged if key[3] else None,
        )

    def _release(self, key: _Key, connection: httpcore.AsyncHTTPConnection) -> None:
        self._slots.release()
        if connection.is_idle():  # not closed by either side: it may serve another request
            self._idle.setdefault(key, deque()).append(connection)

    async def aclose(self) -> None:
        await self.posts.aclose()
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                await connection.aclose()


class _Body(httpx.AsyncByteStream):
    """An answer's body; its connection goes back to the idle stack once it is closed."""

    def __init__(self, stream: AsyncIterable[bytes], *, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        try:
            with _as_httpx_errors():
                await self._stream.aclose()  # type: ignore[attr-defined]  # httpcore's stream
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


def lean_posts(client: httpx.AsyncClient, url: str) -> Http1Pool | None:
    """The :class:`Http1Pool` behind ``client`` for ``url``, when httpx would send that
    URL's requests to a :class:`KeepAliveTransport` (not to a proxy mounted from the
    environment); else None, and the caller goes through httpx (as with a test's
    ``MockTransport``)."""
    transport = client._transport  # httpx has no public accessor for its transports
    if not isinstance(transport, KeepAliveTransport):
        return None
    direct = transport.direct_urls.get(url)
    if direct is None:
        if len(transport.direct_urls) > 1024:  # adapters are few; a bound against surprises
            transport.direct_urls.clear()
        parsed = httpx.URL(url)
        # credentials in the URL: httpx sends them (Basic); Http1Pool does not
        direct = not parsed.userinfo and client._transport_for_url(parsed) is transport
        transport.direct_urls[url] = direct
    return transport.posts if direct else None
