"""A loopback TCP proxy to PostgreSQL that can cut the connections it carries with a
reset and refuse new ones: a failover, or a server that goes away, as the hub sees it
(tests/hub/test_db_failover.py, tests/hub/test_database_unavailable.py). It can also
fall silent, as a host that vanished seems to from the process (tests/hub/
test_db_timeouts.py): a new connection is accepted and never answered, a carried one is
neither read nor forwarded any more. Only the process: the proxy's kernel still
acknowledges what it receives until its buffers are full, which a vanished host never
does (tests/hub/vanishing_host.py drops the packets themselves).

:class:`ResettingProxy` runs on the event loop of the test that starts it;
:func:`proxy_in_thread` runs one on a loop of its own, for a hub served in a thread
(``tests.hub_testing.running_hub``), which connects while the test's code blocks."""

import asyncio
import contextlib
import socket
import struct
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from sqlalchemy.engine import make_url

_READY = b"Z\x00\x00\x00\x05I"  # ReadyForQuery, idle: the end of a login


def upstream_of(database_url: str) -> tuple[str, int]:
    """Where a proxy forwards to: the URL's PostgreSQL host and port."""
    url = make_url(database_url)
    return url.host or "127.0.0.1", url.port or 5432


def through(port: int, database_url: str, **query: str) -> str:
    """``database_url`` by way of a proxy on loopback ``port`` (and ``query`` added)."""
    proxied = make_url(database_url).set(host="127.0.0.1", port=port).update_query_dict(query)
    return proxied.render_as_string(hide_password=False)


class ResettingProxy:
    """Forwards loopback connections to PostgreSQL; :meth:`reset` cuts every one it
    carries with a reset and keeps accepting. With ``refuse_new`` it resets each new one
    at once; with ``cut_new_at_first_statement`` it lets a new one log in and resets it
    when the client sends anything more; with ``ignore_new`` it accepts a new one and
    never reads from it nor answers. :meth:`silence` stops every one it carries: nothing
    more is read from either side, nothing forwarded, nothing closed."""

    def __init__(self, upstream: tuple[str, int] | str) -> None:
        self.upstream = upstream  # (host, port), or a Unix socket's path
        self.accepted = 0
        self.refuse_new = False
        self.cut_new_at_first_statement = False
        self.ignore_new = False
        self._carried: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        # open, never read nor answered: the client's side, and the server's if any
        self._silent: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, *, unix_path: str | None = None) -> None:
        """Listens on a loopback port (:attr:`port`), or on a Unix socket at
        ``unix_path``: a way in from another network namespace."""
        if unix_path is not None:
            self._server = await asyncio.start_unix_server(self._carry, unix_path)
            return
        self._server = await asyncio.start_server(self._carry, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def reset(self) -> None:
        """Cuts every connection carried, and every silent one, with a reset."""
        for hub_side, server_side in self._carried:
            _cut(hub_side)
            server_side.transport.abort()
        self._carried.clear()
        for hub_side, maybe_server_side in self._silent:
            _cut(hub_side)
            if maybe_server_side is not None:
                maybe_server_side.transport.abort()
        self._silent.clear()

    def silence(self) -> None:
        """Every connection carried stops where it is: the proxy reads nothing more from
        either side and forwards nothing (not even what it has read already), and keeps
        both open. The client's kernel sees its data acknowledged by the proxy's until
        the proxy's receive buffer is full, then a window of zero."""
        for hub_side, server_side in self._carried:
            for side in (hub_side, server_side):
                _stop_reading(side)
                _SILENCED.add(side)
        self._silent.extend(self._carried)
        self._carried.clear()

    async def close(self) -> None:
        self.reset()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _carry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.refuse_new:
            _cut(writer)
            return
        if self.ignore_new:
            _stop_reading(writer)
            self._silent.append((writer, None))
            return
        if isinstance(self.upstream, str):
            up_reader, up_writer = await asyncio.open_unix_connection(self.upstream)
        else:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._carried.append((writer, up_writer))
        login = asyncio.Event() if self.cut_new_at_first_statement else None
        self._spawn(_pipe(up_reader, writer, logged_in=login))
        self._spawn(_pipe(reader, up_writer, cut_client=(writer, login) if login else None))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


# The sides of silenced connections: their pipes forward nothing more (a pipe may hold
# data it read before the silence, which it drops).
_SILENCED: weakref.WeakSet[asyncio.StreamWriter] = weakref.WeakSet()


def _stop_reading(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    assert isinstance(transport, asyncio.Transport)  # a socket's: it reads too
    transport.pause_reading()


def _cut(writer: asyncio.StreamWriter) -> None:
    if writer.transport.is_closing():  # cut already, or closed by its peer
        return
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _pipe(
    source: asyncio.StreamReader,
    sink: asyncio.StreamWriter,
    *,
    logged_in: asyncio.Event | None = None,
    cut_client: tuple[asyncio.StreamWriter, asyncio.Event] | None = None,
) -> None:
    """Copies ``source`` to ``sink``. From the server, it marks the end of the login
    (``logged_in``); from the client, with ``cut_client``, it resets the client instead
    of sending on anything after the login."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await source.read(65536):
            if sink in _SILENCED:
                await asyncio.Event().wait()  # until the proxy closes and cancels it
            if cut_client is not None and cut_client[1].is_set():
                _cut(cut_client[0])
                break
            sink.write(data)
            await sink.drain()
            if logged_in is not None and data.endswith(_READY):
                logged_in.set()
    sink.transport.abort()


class ProxyThread:
    """A :class:`ResettingProxy` on an event loop in a thread of its own."""

    def __init__(self, proxy: ResettingProxy, loop: asyncio.AbstractEventLoop) -> None:
        self.proxy, self._loop = proxy, loop

    @property
    def port(self) -> int:
        return self.proxy.port

    def away(self) -> None:
        """The server goes away: every connection carried is reset, every new one too."""
        self._on_loop(self._away)

    def unanswering(self) -> None:
        """The server's address answers nothing: every connection carried is reset, and
        every new one accepted and never answered."""
        self._on_loop(self._unanswering)

    def back(self) -> None:
        """The server answers again: new connections are carried, the silent ones cut."""
        self._on_loop(self._back)

    def _away(self) -> None:
        self.proxy.refuse_new = True
        self.proxy.reset()

    def _unanswering(self) -> None:
        self.proxy.ignore_new = True
        self.proxy.reset()

    def _back(self) -> None:
        self.proxy.refuse_new = self.proxy.ignore_new = False
        self.proxy.reset()

    def _on_loop(self, change: Callable[[], None]) -> None:
        async def run() -> None:
            change()

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)


@contextlib.contextmanager
def proxy_in_thread(
    upstream: tuple[str, int], *, unix_path: str | None = None
) -> Iterator[ProxyThread]:
    """A :class:`ProxyThread` to ``upstream``, on a loopback port or at ``unix_path``,
    closed when the block ends."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="pg-proxy", daemon=True)
    thread.start()
    proxy = ResettingProxy(upstream)
    try:
        started = proxy.start(unix_path=unix_path)
        asyncio.run_coroutine_threadsafe(started, loop).result(timeout=10)
        yield ProxyThread(proxy, loop)
    finally:
        asyncio.run_coroutine_threadsafe(proxy.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
