"""How a department's adapter is served under uvicorn (the hub is served the same way).

uvicorn writes an answer's head when the app sends ``http.response.start`` and its
body at ``http.response.body``: two writes, so two ``send`` calls and two TCP segments
for every answer, and the peer (the hub, reading an owner's answer) may wake twice to
read it. :class:`HeadWithBodyProtocol` writes them as one.

uvicorn's httptools protocol also buffers a request head (request line and header
fields) without any bound, before any app or token check runs: a 50 MiB head was
parsed whole. :class:`BoundedHeadProtocol` refuses one larger than
:data:`MAX_HEAD_BYTES` before it is all in memory, with 431 (RFC 6585 §5), and
:func:`server_options` are the settings that serve an adapter so (h11 bounded too).
The hub's servers use the same bound (onceonly.hub.cli.servers).
"""

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ._errors import PROBLEM_PREFIX

__all__ = [
    "MAX_HEAD_BYTES",
    "BoundedHeadProtocol",
    "HeadWithBody",
    "HeadWithBodyProtocol",
    "server_options",
]

MAX_HEAD_BYTES = 64 * 1024
"""The largest request head (request line and header fields) a server reads."""
_END_OF_HEAD = b"\r\n\r\n"


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


class BoundedHeadProtocol(HeadWithBodyProtocol):
    """:class:`HeadWithBodyProtocol` with a bound on each request head: one that grows
    past ``max_head_bytes`` is answered 431 by `head_too_large` (no app runs) and
    the connection closed, before the rest of it is read."""

    max_head_bytes = MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head: int | None = 0  # bytes of the head read so far; None in a body
        self._tail = b""  # the last bytes read, to find an end of head split in two

    def head_too_large(self) -> bytes:
        """The whole 431 answer, an RFC 9457 problem written by the protocol itself."""
        detail = f"the request head is larger than {self.max_head_bytes} bytes"
        problem = {
            "type": PROBLEM_PREFIX + "request-header-fields-too-large",
            "title": "Request header fields too large",
            "status": 431,
            "detail": detail,
        }
        body = json.dumps(problem, separators=(",", ":")).encode()
        head = [
            b"HTTP/1.1 431 Request Header Fields Too Large",
            b"content-type: application/problem+json",
            b"content-length: " + str(len(body)).encode(),
            b"connection: close",
        ]
        return b"\r\n".join([*head, b"", body])

    def data_received(self, data: bytes) -> None:
        if self._head is not None:
            window = self._tail + data
            end = window.find(_END_OF_HEAD)
            self._head += len(data) if end < 0 else max(0, end + 4 - len(self._tail))
            self._tail = window[-3:]
            if self._head > self.max_head_bytes:
                self._refuse_head()
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._head = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head, self._tail = 0, b""
        super().on_message_complete()

    def _refuse_head(self) -> None:
        if self.cycle is None or self.cycle.response_complete:  # no answer under way
            self.transport.write(self.head_too_large())
        self.transport.close()


def server_options() -> dict[str, Any]:
    """uvicorn settings that serve an adapter: heads bounded (h11's too, if chosen),
    each answer's head written with its body."""
    return {"http": BoundedHeadProtocol, "h11_max_incomplete_event_size": MAX_HEAD_BYTES}
