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

uvicorn starts its keep-alive timeout only after an answer: a client that connected
and sent nothing, or sent a head a byte every few seconds (slowloris), held its
connection for ever. :class:`BoundedHeadProtocol` also bounds a head in time: it must
be whole within :data:`HEAD_TIMEOUT` seconds of connecting (the first) or of its first
byte (a later one, the idle gap before it being uvicorn's keep-alive timeout), or the
connection is closed, after a 408 if some of the head came (decision 0066).

A request its parser cannot read (a malformed request line or header field, a bad
chunk size) uvicorn answers with a plain-text 400; :class:`BoundedHeadProtocol`
answers it with an RFC 9457 problem (``invalid-request``) and closes the connection.
A body refused so while its app reads it marks the request's scope
(:data:`MALFORMED_BODY`), so the app can tell that answer from a client gone. A
method the parser does not know, and a body with a transfer coding other than
chunked (``Transfer-Encoding: gzip, chunked``, which the parser reads as chunked and
the coding left on), are answered 501 (RFC 9110 §9.1, RFC 9112 §6.1).
"""

import asyncio
import email.utils
import functools
import json
import re
import sys
from collections import deque
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ._errors import PROBLEM_PREFIX

__all__ = [
    "HEAD_TIMEOUT",
    "MALFORMED_BODY",
    "MALFORMED_DETAIL",
    "MAX_HEAD_BYTES",
    "UNKNOWN_CODING_DETAIL",
    "BoundedHeadProtocol",
    "HeadWithBody",
    "HeadWithBodyProtocol",
    "closing_fields",
    "server_options",
    "with_head_timeout",
]

MAX_HEAD_BYTES = 64 * 1024
"""The largest request head (request line and header fields) a server reads."""
HEAD_TIMEOUT = 10.0
"""Seconds a connection has to send a whole request head: from connecting for its
first, from the head's first byte for each later one."""
_END_OF_HEAD = b"\r\n\r\n"
MALFORMED_DETAIL = "the request is not well-formed HTTP/1.1 (RFC 9112)"
UNKNOWN_METHOD_DETAIL = "the request's method is not one this server knows"
_TE_IN_HTTP_1_0 = (
    "an HTTP/1.0 request has no Transfer-Encoding (RFC 9112 §6.1): send HTTP/1.1, or a"
    " Content-Length"
)
UNKNOWN_CODING_DETAIL = (
    "the request's body has a transfer coding this server does not decode: only chunked"
)
# What llhttp says of a request line whose method it does not know (httptools raises
# HttpParserInvalidMethodError for the first, HttpParserError for the second: RTSP's
# methods). It says the first of any bytes that start no method too (a TLS handshake on
# the plain port, a body's bytes past its Content-Length), so the line is looked at too.
_UNKNOWN_METHOD_ERRORS = frozenset(
    {
        "Invalid method encountered",
        "Invalid method for HTTP/x.x request",
        "Expected space after method",  # a known one's name and more: GETX
    }
)
# The start of a request line (RFC 9112 §3): a method token, one space, a target, one
# space, and the version's name; after any empty lines, which a server ignores before a
# request line (RFC 9112 §2.2) and the parser does too.
_REQUEST_LINE = re.compile(rb"(?:\r?\n)*[!#$%&'*+.^_`|~0-9A-Za-z-]+ [!-~]+ HTTP/")
_EMPTY_LINES = re.compile(rb"[\r\n]*")  # before a request line (RFC 9112 §2.2)
# What a request line not yet whole may be: its method token, then its target, then a
# beginning of "HTTP/" (after any empty lines, as above).
_LINE_SO_FAR = re.compile(
    rb"(?:\r?\n)*\r?[!#$%&'*+.^_`|~0-9A-Za-z-]+(?: [!-~]*(?: (?:H|HT|HTT|HTTP|HTTP/)?)?)?"
)
MALFORMED_BODY = "onceonly.malformed_body"
"""The key :class:`BoundedHeadProtocol` sets (to True) in a request's ``scope["state"]``
when it answered 400 to a malformed body (a bad chunk) while the app read it: the app
then reads that its client is gone, though the client was answered. The hub reads this
key (onceonly.hub.kit.asgi_scope.MALFORMED_BODY is it)."""


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
    """:class:`HeadWithBodyProtocol` with a bound on each request head, in size and in
    time (no app runs for a head refused, and the connection is closed):

    - one that grows past ``max_head_bytes`` is answered 431 by `head_too_large`,
      before the rest of it is read;
    - one not whole within ``head_timeout`` seconds is answered 408 by
      `head_timed_out` (RFC 9110 §15.5.9). The first head's time runs from connecting,
      and a connection that sent nothing by then is closed without an answer; a later
      head's runs from its first byte, the idle gap before it being uvicorn's
      keep-alive timeout (``timeout_keep_alive``), which ends at any byte. One timer
      a connection, armed for each head and cancelled when it is whole: a slow app or
      a slow body is not bounded here.

    A chunked body's trailer fields (RFC 9112 §7.1.2) are read and dropped: uvicorn
    appended them to the request's header fields, which the app had already been given
    (RFC 9110 §6.5.1: a recipient must not merge them; a trailer ``Authorization`` was
    read as the request's). What a chunked body carries between its body bytes (a
    chunk's size line, the trailers after the last chunk) is bounded as a head is, at
    ``max_head_bytes``: past it, the message is refused 400 if its app has not answered
    yet, and the connection closed.
    """

    max_head_bytes = MAX_HEAD_BYTES
    head_timeout = HEAD_TIMEOUT

    def __init__(self, *args: Any, head_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if head_timeout is not None:
            self.head_timeout = head_timeout
        self._head: int | None = 0  # bytes of the head read so far; None in a body
        self._tail = b""  # the last bytes read, to find an end of head split in two
        self._head_begun = False  # a byte of the head came (then it is answered 408)
        self._head_timer: asyncio.TimerHandle | None = None
        self._framing = 0  # bytes read since the body's last byte (framing, trailers)
        self._trailers = 0  # bytes of the trailer fields parsed (each counted whole)
        # Whether the read being parsed starts a request line of its own: no message under
        # way, nor an answer (its method, if unknown, is then 501), and the cycle then.
        # The request line of a head that began at the start of a read on an idle
        # connection, as its bytes came (None: no such line under way), to tell an
        # unknown method (501) from bytes that start no request line (400) when the
        # line comes in pieces; the line's cycle then (none parsed from it since).
        self._line: bytearray | None = None
        self._line_cycle: Any = None
        self._line_whole = False  # its end (LF) came, or the head's bound
        self._line_begun = False  # a byte of it came, not only empty lines before it
        self._pending = False  # an unknown method's line not yet whole: more is read
        self._unreadable = False  # the parser failed: nothing more is read or answered
        self._parsed = 0  # bytes of the head being parsed: its target and its fields
        self._codings: list[bytes] = []  # the head's Transfer-Encoding field values
        # The whole answer to a head whose framing on_headers_complete refused (a
        # transfer coding but chunked: 501; HTTP/1.0 with Transfer-Encoding: 400)
        self._framing_answer: bytes | None = None

    def head_too_large(self) -> bytes:
        """The whole 431 answer, an RFC 9457 problem written by the protocol itself."""
        detail = f"the request head is larger than {self.max_head_bytes} bytes"
        return _problem_answer(
            status=431,
            reason="Request Header Fields Too Large",
            slug="request-header-fields-too-large",
            detail=detail,
        )

    def head_timed_out(self) -> bytes:
        """The whole 408 answer, an RFC 9457 problem written by the protocol itself."""
        detail = f"the request head was not whole within {self.head_timeout:g} seconds"
        return _problem_answer(
            status=408, reason="Request Timeout", slug="request-timeout", detail=detail
        )

    def malformed(self, detail: str = MALFORMED_DETAIL) -> bytes:
        """The whole 400 answer to a request the parser cannot read as HTTP/1.1 (RFC 9112),
        or whose framing is past its bound, an RFC 9457 problem written by the protocol
        itself (uvicorn's is plain text)."""
        return _problem_answer(
            status=400, reason="Bad Request", slug="invalid-request", detail=detail
        )

    def not_implemented(self) -> bytes:
        """The whole 501 answer to a request whose method the parser does not know (RFC
        9110 §9.1: "An origin server that receives a request method that is
        unrecognized or not implemented SHOULD respond with the 501"), an RFC 9457
        problem written by the protocol itself."""
        return _problem_answer(
            status=501,
            reason="Not Implemented",
            slug="method-not-implemented",
            detail=UNKNOWN_METHOD_DETAIL,
            title="Method not implemented",
        )

    def coding_not_implemented(self) -> bytes:
        """The whole 501 answer to a request whose body has a transfer coding other than
        chunked (RFC 9112 §6.1: "A server that receives a request message with a
        transfer coding it does not understand SHOULD respond with 501"), an RFC 9457
        problem written by the protocol itself."""
        return _problem_answer(
            status=501,
            reason="Not Implemented",
            slug="transfer-coding-not-implemented",
            detail=UNKNOWN_CODING_DETAIL,
            title="Transfer coding not implemented",
        )

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request its parser refused: :meth:`malformed`, or
        :meth:`not_implemented` for a well-formed request line whose method the parser
        does not know (:meth:`_unknown_method`); the connection is then closed. A body
        refused while its app runs (a bad chunk) is answered so too, and the app then
        reads that its client is gone: its scope's state says why
        (:data:`MALFORMED_BODY`).

        A request that cannot be parsed while the answer before it is under way (it was
        pipelined, or a body ran past its Content-Length) gets no answer of its own
        (:meth:`_finish_then_close`), as for a late pipelined head; so too a head the
        parser was stopped in for its size, which is otherwise 431."""
        if self._parsed > self.max_head_bytes:  # stopped by _count_parsed: too large
            self._unreadable = True
            self._refuse_head()
            return
        if self._answers_before():
            self._finish_then_close()
            return
        self._unreadable = True
        if self._framing_answer is not None:  # stopped by on_headers_complete, no app ran
            self.transport.write(self._framing_answer)
            self.transport.close()
            return
        if self.cycle is not None and self._head is None:  # its own body, while its app runs
            self._refuse_body(MALFORMED_DETAIL)
            return
        if self._unknown_method():
            assert self._line is not None
            if not self._line_whole and _LINE_SO_FAR.fullmatch(self._line):
                self._unreadable, self._pending = False, True  # its line's rest is read
                return
            self._answer_line()
            return
        self.transport.write(self.malformed())
        self.transport.close()

    def _take_line(self, data: bytes) -> None:
        """Add to :attr:`_line` what ``data`` holds of it: up to its end (the first LF
        after any empty lines before it), at most one byte past the head's bound."""
        line = self._line
        assert line is not None
        start = 0 if self._line_begun else _EMPTY_LINES.match(data).end()  # type: ignore[union-attr]
        self._line_begun = self._line_begun or start < len(data)
        end = data.find(b"\n", start)
        self._line_whole = end >= 0 or len(line) + len(data) > self.max_head_bytes
        line += data[: end + 1] if end >= 0 else data[: self.max_head_bytes + 1 - len(line)]

    def _answer_line(self) -> None:
        """501 to a whole request line whose method the parser does not know, 400 to
        bytes that are no request line, 431 to a line past the head's bound; closed."""
        line = bytes(self._line or b"")
        self._unreadable, self._pending = True, False
        self._cancel_head_timer()  # answered: no 408 after it
        if len(line) > self.max_head_bytes:
            self.transport.write(self.head_too_large())
        elif _REQUEST_LINE.match(line):
            self.transport.write(self.not_implemented())
        else:
            self.transport.write(self.malformed())
        self.transport.close()

    def _answers_before(self) -> bool:
        """Whether the message being read comes after a request not yet answered: a new
        head while an answer is under way, or the body of a request queued behind one
        (uvicorn runs pipelined requests one at a time, in order)."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return False
        return self._head is not None or any(waiting is cycle for waiting, _ in self.pipeline)

    def _finish_then_close(self) -> None:
        """A message that cannot be read or taken, after requests not yet answered: it
        gets no answer of its own (one now would be read as an earlier request's).
        Nothing more is read; a queued request whose body this was never runs; the
        requests before it are answered in order, and the connection then closes."""
        self._unreadable = True
        cycle = self.cycle
        if self._head is None:  # a queued request's body
            self.pipeline = deque(item for item in self.pipeline if item[0] is not cycle)
        elif cycle is not None:  # the last request read closes the connection
            cycle.keep_alive = False
        self.transport.pause_reading()

    def on_response_complete(self) -> None:
        """uvicorn's: the next queued request starts, or the connection waits for one.
        Once the parser has failed nothing more is read, so when no request is left to
        answer the connection closes at once, not at the keep-alive timeout. A head
        already begun (it came with the request before) is not an idle connection: its
        own deadline runs (``head_timeout``, then 408), not the keep-alive timeout,
        which uvicorn arms here and which would close it unanswered first."""
        idle = not self.pipeline
        super().on_response_complete()
        if self._unreadable and idle and not self.transport.is_closing():
            self.transport.close()
        elif idle and self._head_begun and self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    def _unknown_method(self) -> bool:
        """Whether the parser's error (uvicorn calls :meth:`send_400_response` while it
        handles it) is about the method of a request line that began at the start of a
        read on an idle connection, with no message parsed since (:attr:`_line`): the
        line, whole or once whole, then tells 501 from 400 (:meth:`_answer_line`)."""
        error = sys.exc_info()[1]
        return (
            isinstance(error, httptools.HttpParserError)
            and str(error) in _UNKNOWN_METHOD_ERRORS
            and self._line is not None
            and self.cycle is self._line_cycle
        )

    def _refuse_body(self, detail: str) -> None:
        """Refuse the message whose body is being read, 400 with ``detail``, only if its
        app has not begun its own answer (an app may answer before it reads the body: a
        second answer to one request would be read as the next one's); its scope's state
        keeps ``detail`` (:data:`MALFORMED_BODY`: the app then reads that its client is
        gone, and the hub audits what the client was told); closed."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            self.transport.write(self.malformed(detail))
            cycle.scope.setdefault("state", {})[MALFORMED_BODY] = detail
        self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._pending:  # the rest of an unknown method's line: kept, not parsed, and
            self._take_line(data)  # looked at once whole (each read costs its own bytes)
            if self._line_whole:
                self._answer_line()
            return
        if self._unreadable:  # read again (flow control) after the parser failed: dropped
            return
        cycle = self.cycle
        if (cycle is None or cycle.response_complete) and self._head == 0 and not self._head_begun:
            self._line, self._line_cycle = bytearray(), cycle
            self._line_whole = self._line_begun = False
        if self._line is not None and not self._line_whole:
            self._take_line(data)
        if self._head is not None:
            window = self._tail + data
            end = window.find(_END_OF_HEAD)
            in_head = len(data) if end < 0 else max(0, end + 4 - len(self._tail))
            self._head += in_head
            self._tail = window[-3:]
            if self._head > self.max_head_bytes:
                self._refuse_head()
                return
            self._framing += len(data) - in_head  # what follows the head, if it ended
        else:
            self._framing += len(data)
        super().data_received(data)  # on_body starts _framing again at each body byte
        if self._unreadable or self.transport.is_closing():  # answered: no second answer
            return
        over = max(self._framing, self._trailers) > self.max_head_bytes
        if over:  # chunk sizes and trailers since the last body byte, or the trailers
            if self._answers_before():
                self._finish_then_close()
            elif self._head is None:
                self._refuse_body(
                    f"the request's chunk framing and trailers are larger than"
                    f" {self.max_head_bytes} bytes"
                )
            else:
                self._refuse_head()

    def on_body(self, body: bytes) -> None:
        # What is bounded is what comes between body bytes (a chunk's size line, the
        # trailers after the last), not their sum: a body in small chunks is legitimate
        # (1-byte chunks cost 5 bytes each). Bytes after the last body byte of a read
        # are not counted: the bound is exact to within one read.
        self._framing = 0
        super().on_body(body)

    def on_url(self, url: bytes) -> None:
        self._count_parsed(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head is None:  # a trailer field, after the body: counted, dropped
            self._trailers += len(name) + len(value) + 4
            return
        self._count_parsed(len(name) + len(value) + 3)  # at least "name:value\r\n"
        if name.lower() == b"transfer-encoding":
            self._codings.append(value)
        super().on_header(name, value)

    def _count_parsed(self, size: int) -> None:
        """The head as the parser gives it, counted too: ``data_received`` counts the
        bytes of a head from the read it starts in only when no message came before it
        in that read (a helper's hostile review: a head pipelined in the same read as
        the request before escaped the bound, up to a read's size). Past the bound the
        parser is stopped, and :meth:`send_400_response` refuses it as too large."""
        self._parsed += size
        if self._parsed > self.max_head_bytes:
            raise _HeadTooLarge

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._parsed = 0
        self._codings = []
        self._head_begun = True
        if self._head_timer is None:  # the first head's timer runs from connecting
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_expired)

    def on_headers_complete(self) -> None:
        self._line = None  # a head was parsed: its method was known
        if self._codings and self.parser.get_http_version() == "1.0":
            # RFC 9112 §6.1: an HTTP/1.0 message's Transfer-Encoding is faulty framing
            self._framing_answer = self.malformed(_TE_IN_HTTP_1_0)
            raise _FramingRefused
        if self._codings and _other_codings(self._codings):
            # Before the parser's own check, which comes after this callback and refuses
            # (400) a list whose final coding is not chunked, as RFC 9112 §6.3 says.
            self._framing_answer = self.coding_not_implemented()
            raise _FramingRefused
        self._head, self._head_begun = None, False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head, self._tail, self._framing, self._trailers = 0, b"", 0, 0
        super().on_message_complete()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head is late while the answer before it is under way: that
            # answer goes out whole, then the connection closes (as at a shutdown).
            self.cycle.keep_alive = False
            return
        if self._head_begun:
            self.transport.write(self.head_timed_out())
        self.transport.close()

    def _refuse_head(self) -> None:
        if self._answers_before():
            self._finish_then_close()
            return
        self.transport.write(self.head_too_large())
        self.transport.close()


class _HeadTooLarge(Exception):
    """Raised in a parser callback: the head parsed so far is past the bound (the
    parser raises ``HttpParserCallbackError`` from it)."""


class _FramingRefused(Exception):
    """Raised in a parser callback: the head's framing is refused (a transfer coding
    but chunked, or Transfer-Encoding in HTTP/1.0); its answer is kept to be sent."""


def _other_codings(fields: list[bytes]) -> bool:
    """Whether the Transfer-Encoding field values (RFC 9112 §6.1, a list, possibly
    over several fields) end in chunked, as the parser takes them, and name another
    coding before it (``gzip, chunked``; chunked is case-insensitive). A list that does
    not end in chunked is left to the parser (400), as is chunked named twice."""
    codings = [coding.strip(b" \t").lower() for field in fields for coding in field.split(b",")]
    codings = [coding for coding in codings if coding]
    return len(codings) > 1 and codings[-1] == b"chunked" and b"chunked" not in codings[:-1]


def closing_fields() -> list[bytes]:
    """The header fields that end the head of an answer the protocol writes itself (no
    app answered, so no middleware added them): ``Date`` (RFC 9110 §6.6.1: an origin
    server with a clock sends it on every 4xx), ``X-Content-Type-Options: nosniff`` (as
    on every other answer) and ``Connection: close`` (the connection is then closed)."""
    return [
        b"date: " + email.utils.formatdate(usegmt=True).encode(),
        b"x-content-type-options: nosniff",
        b"connection: close",
    ]


def _problem_answer(
    *, status: int, reason: str, slug: str, detail: str, title: str | None = None
) -> bytes:
    """A whole answer that closes its connection: an RFC 9457 problem, titled
    ``title`` (the reason phrase, capitalized, by default)."""
    problem = {
        "type": PROBLEM_PREFIX + slug,
        "title": title or reason.capitalize(),
        "status": status,
    }
    body = json.dumps({**problem, "detail": detail}, separators=(",", ":")).encode()
    head = [
        f"HTTP/1.1 {status} {reason}".encode(),
        b"content-type: application/problem+json",
        b"content-length: " + str(len(body)).encode(),
        *closing_fields(),
    ]
    return b"\r\n".join([*head, b"", body])


def with_head_timeout(protocol: type[BoundedHeadProtocol], head_timeout: float) -> Any:
    """``protocol`` as uvicorn's ``http`` setting, its heads given ``head_timeout``
    seconds: the class itself for its own, else a partial of it (which uvicorn's
    worker processes unpickle, as they do the class)."""
    if head_timeout == protocol.head_timeout:
        return protocol
    return functools.partial(protocol, head_timeout=head_timeout)


def server_options(*, head_timeout: float = HEAD_TIMEOUT) -> dict[str, Any]:
    """uvicorn settings that serve an adapter: heads bounded (h11's too, if chosen,
    in size only), each answer's head written with its body."""
    return {
        "http": with_head_timeout(BoundedHeadProtocol, head_timeout),
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }
