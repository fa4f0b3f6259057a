"""How a department's adapter is served under uvicorn (the hub is served the same way).

uvicorn writes an answer's head when the app sends ``http.response.start`` and its
body at ``http.response.body``: two writes, so two ``send`` calls and two TCP segments
for every answer, and the peer (the hub, reading an owner's answer) may wake twice to
read it. :class:`HeadWithBodyProtocol` writes them as one.
"""

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeadWithBody:
    """A response's transport as uvicorn's response cycle sees it.

    uvicorn writes an answer's head (status line and header fields) when the app sends
    ``http.response.start``, and its body at ``http.response.body``: two writes, so
    two ``send`` calls and two TCP segments for every answer. The cycle's first write
    is held here until the next write or the event loop's next step, whichever comes
    first: a head and a body sent in one step (every answer that is not streamed) go
    out as one write. A streamed answer's head goes out at the next step, before its
    first chunk is ready. Everything else is the connection's transport itself.
    """

    __slots__ = ("_held", "_loop", "_started", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._started = False

    def write(self, data: bytes) -> None:
        if not self._started:
            self._started = True
            self._held = data
            self._loop.call_soon(self._flush)
            return
        held, self._held = self._held, None
        self._transport.write(data if held is None else held + data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HeadWithBodyProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, each answer's transport a :class:`HeadWithBody`
    (but a HEAD answer's, which has no body to wait for)."""

    def on_headers_complete(self) -> None:
        before = self.cycle
        super().on_headers_complete()
        # A HEAD answer is only its head: held, it would still wait when the answer is
        # complete, and uvicorn's own writes on the connection (a 400 for a pipelined
        # request it cannot parse, the 431 of the hub's bound) or its close at a
        # graceful shutdown could come first, or drop it.
        if self.cycle is not None and self.cycle is not before and self.scope["method"] != "HEAD":
            self.cycle.transport = HeadWithBody(self.transport, self.loop)  # type: ignore[assignment]
