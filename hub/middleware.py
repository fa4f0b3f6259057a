"""ASGI middleware: request ids, hard header and body size limits, no NUL in URLs, the
500 for unexpected errors, access logs, metrics.

Pure ASGI (not BaseHTTPMiddleware) so that it adds no task per request and can
stop an oversized body while it streams in.

Request ids: the hub makes its own for every request (``X-Request-Id`` on the
answer, ``request_id`` in the audit entry and the access log, sent on to an owner's
adapter). A well-formed ``X-Request-Id`` from the client is held beside it, as
``client_request_id`` in the scope's state, and goes into the audit entry only once
the client has authenticated (onceonly.hub.audit.service.AuditScope, decision 0070):
a client's id is not unique, so it never names an entry, and it is never echoed nor
logged.
"""

import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onceonly.hub.errors import handled, render_unexpected
from onceonly.hub.kit.asgi_scope import route_path
from onceonly.hub.kit.nul import NUL_DETAIL, url_has_nul
from onceonly.hub.kit.problems import (
    HttpVersionNotSupported,
    InvalidRequest,
    PayloadTooLarge,
    RequestHeadersTooLarge,
    UnsupportedContentEncoding,
    problem_response,
    render,
)
from onceonly.hub.metrics import REQUEST_STARTED, Series

log = logging.getLogger("onceonly.access")

REQUESTS = Counter("onceonly_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "onceonly_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
_REQUESTS, _LATENCY = Series(REQUESTS), Series(LATENCY)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Request header fields in total, names and values (docs/operations.md). The server
# (onceonly.hub.cli.servers) refuses a request head twice this size before it is buffered.
MAX_HEADER_BYTES = 32 * 1024
_API_ROOT = "/v1/"
# A Host field's value (RFC 9112 §3.2: a server answers 400 to any other): RFC 3986's
# ``host [ ":" port ]``, host an IP-literal (IPv6 or IPvFuture in brackets) or a reg-name
# (an IPv4 address is one), possibly empty. Each character matches one way: linear.
_HOST = re.compile(
    rb"(?:\[(?:[0-9A-Fa-f:.]+|[vV][0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+)\]"
    rb"|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)"
    rb"(?::[0-9]*)?"
)
# The versions the hub answers; the parser passes 2.0, and 0.9 for a request line
# without a version, on an HTTP/1.1 connection.
_VERSIONS = ("1.1", "1.0")
# On every answer: a client reads it as the type it is labelled, never sniffs another
# (a problem or a record taken for HTML). As Starlette spells its fields, in lower case.
_NOSNIFF = (b"x-content-type-options", b"nosniff")
# On an API answer that says nothing of caching: every /v1 answer is the caller's own
# (records, people, grants, the log's content, decisions about them), so none is kept
# by a browser or a proxy (RFC 9111 §5.2.2.5); a route that may be cached says so.
_NO_STORE = (b"cache-control", b"no-store")
_OAUTH_ROOT = "/oauth/"


class _BodyTooLarge(Exception):
    pass


class RequestContextMiddleware:
    """``audited_first``: whether a request's route opens its audit scope before it
    reads the body (the record query's fast path): a body declared larger than the
    limit is then refused at its first read, as one that streams past it, so that the
    refusal is that scope's entry; any other is refused on its head."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        audited_first: Callable[[Scope], bool] = lambda scope: False,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.audited_first = audited_first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"], state["client_request_id"] = request_id, _client_request_id(scope)
        started = time.perf_counter()
        REQUEST_STARTED.set(started)  # this request's context only (onceonly.hub.metrics)
        status = {"code": 500, "sent": False}

        api = scope["path"].startswith(_API_ROOT)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
                headers = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
                if _NOSNIFF not in headers:  # (the console's pages and docs set it themselves)
                    headers.append(_NOSNIFF)
                if api and not any(name == b"cache-control" for name, _ in headers):
                    headers.append(_NO_STORE)
                message["headers"] = headers
            await send(message)

        try:
            refusal = self._refusal(scope)  # before any route sees the request
            if refusal is not None:
                await refusal(scope, receive, send_with_id)
                return
            too_large = _declared_length(scope) > self.max_body_bytes
            if too_large and not self.audited_first(scope):
                await render(_payload_too_large(scope, self.max_body_bytes))(
                    scope, receive, send_with_id
                )
                return
            await self.app(scope, self._limited(receive, too_large=too_large), send_with_id)
        except _BodyTooLarge:  # streamed past the limit, or declared so on an audited route
            await _too_large(scope, receive, send_with_id, self.max_body_bytes)
        except Exception as error:
            await _unexpected(scope, receive, send_with_id, error, answered=bool(status["sent"]))
        finally:
            _observe(scope, int(status["code"]), time.perf_counter() - started, request_id)

    def _refusal(self, scope: Scope) -> Response | None:
        """The answer to a request refused on its head alone, or None."""
        size, repeated, host, coded = _head(scope)
        if size > MAX_HEADER_BYTES:
            detail = f"the request's header fields are larger than {MAX_HEADER_BYTES} bytes"
            return render(RequestHeadersTooLarge(detail))
        if repeated is not None:  # a proxy reading the last and the hub the first would differ
            return render(InvalidRequest(f"the request has more than one {repeated} field"))
        version = scope.get("http_version", "1.1")
        if version not in _VERSIONS:
            return _version_not_supported()
        if host is None and version != "1.0":
            detail = "the request has no Host field, which HTTP/1.1 requires (RFC 9112 §3.2)"
            return render(InvalidRequest(detail))
        if host is not None and _HOST.fullmatch(host) is None:
            detail = (
                "the request's Host field is not a host and optional port"
                " (RFC 9112 §3.2, RFC 3986 §3.2.2)"
            )
            return render(InvalidRequest(detail))
        if coded:
            return _coded_body()
        if url_has_nul(scope.get("path", ""), scope.get("query_string", b"")):
            return _nul_in_url()
        repeated = _repeated_parameter(scope)
        if repeated is not None:
            return render(InvalidRequest(f"the query parameter {repeated!r} is given twice"))
        return None

    def _limited(self, receive: Receive, *, too_large: bool) -> Receive:
        """``receive``, refusing a body past the limit; one declared past it at the
        first read, before a byte of it is read."""
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            if too_large:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        return limited


# The bits RFC 9562 §4.1-4.2 fix in a random UUID: variant 10, version 4.
_UUID4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID4_SET = (0x8000 << 48) | (4 << 76)


def new_request_id() -> str:
    """A random UUID (version 4) as 32 hex digits: ``uuid.uuid4().hex``, without building
    a ``UUID`` object (2-3 µs of a request's CPU)."""
    return f"{int.from_bytes(os.urandom(16)) & _UUID4_CLEAR | _UUID4_SET:032x}"


def _client_request_id(scope: Scope) -> str | None:
    """The client's ``X-Request-Id``, if it sent a well-formed one."""
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = bytes(value).decode("latin-1")
            return candidate if _REQUEST_ID.match(candidate) else None
    return None


# Fields a request carries at most once, by their names as the hub reads them and as
# they are spelled: of two, a proxy could read the last and the hub the first. Two
# Authorization fields would be two credentials (RFC 6750 §3.1); Idempotency-Key is one
# sf-string (RFC 8941 §3.3.3), which two lines would join into a list; two Content-Type
# fields, two readings of the body; two Host fields, two targets (RFC 9112 §3.2).
_ONCE = {
    b"authorization": "Authorization",
    b"idempotency-key": "Idempotency-Key",
    b"content-type": "Content-Type",
    b"host": "Host",
}


def _head(scope: Scope) -> tuple[int, str | None, bytes | None, bool]:
    """In one pass over the header fields: their size in bytes (names and values), the
    first of the fields in :data:`_ONCE` that is given twice, the Host field's value
    (None without one), and whether any Content-Encoding names a coding."""
    size, repeated, host, coded = 0, None, None, False
    seen: set[bytes] = set()
    for name, value in scope.get("headers", []):
        size += len(name) + len(value)
        if name in _ONCE:
            if name in seen and repeated is None:
                repeated = _ONCE[name]
            seen.add(name)
            if name == b"host":
                host = value
        elif name == b"content-encoding":
            coded = coded or bytes(value).strip().lower() not in (b"", b"identity")
    return size, repeated, host, coded


def _repeated_parameter(scope: Scope) -> str | None:
    """The first query parameter an API route is given more than once, if any: each
    takes one value, and layers that read the first and the last would differ (the
    console's pages are left to their forms)."""
    query: bytes = scope.get("query_string", b"")
    if not query:
        return None
    if not route_path(scope).startswith(_API_ROOT):
        return None
    seen: set[str] = set()
    for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name in seen:
            return name[:64]
        seen.add(name)
    return None


def _version_not_supported() -> Response:
    """RFC 9110 §15.6.6: the request's HTTP version is not one the hub answers."""
    return render(HttpVersionNotSupported("the hub answers HTTP/1.1 and HTTP/1.0 requests only"))


def _coded_body() -> Response:
    """A content coding is refused, not read as if there were none (RFC 7694 §3: the
    answer names the coding the hub takes)."""
    return render(
        UnsupportedContentEncoding(
            "the hub reads request bodies without a content coding (Content-Encoding:"
            " identity, or none)",
            headers={"Accept-Encoding": "identity"},
        )
    )


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def _payload_too_large(scope: Scope, limit: int) -> PayloadTooLarge:
    """The 413; at the OAuth endpoints with their error members and ``no-store``, as
    every answer there (RFC 6749 §5.1, §5.2; docs/protocol.md)."""
    detail = f"the body is larger than {limit} bytes"
    if not route_path(scope).startswith(_OAUTH_ROOT):
        return PayloadTooLarge(detail)
    return PayloadTooLarge(
        detail,
        headers={"Cache-Control": "no-store"},
        extra={"error": "invalid_request", "error_description": detail},
    )


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    """The 413 for a body found too large while it was read (or at its first read, for
    one declared so on a route that audits first): by then an audited route has opened
    its audit scope, and the refusal is its entry (onceonly.hub.errors)."""
    request = Request(scope, receive)
    response = await handled(request, _payload_too_large(scope, limit))
    await response(scope, receive, send)


def _nul_in_url() -> Response:
    return problem_response(
        status=InvalidRequest.status,
        slug=InvalidRequest.slug,
        title=InvalidRequest.title,
        detail=f"{NUL_DETAIL}: in the URL's path or query string",
    )


async def _unexpected(
    scope: Scope, receive: Receive, send: Send, error: Exception, *, answered: bool
) -> None:
    """Answer an exception no handler took with the 500 problem (onceonly.hub.errors), here
    rather than in Starlette's ServerErrorMiddleware, which re-raises: the server
    would print a second traceback and close the keep-alive connection. Once an
    answer has begun it cannot be replaced: the error is logged once and the answer
    left incomplete, so the server ends the connection (a truncated answer must not
    look whole)."""
    request = Request(scope, receive)
    if answered:
        log.error(
            "unexpected error after the answer began",
            exc_info=error,
            extra={"request_id": request.state.request_id},
        )
        return
    response = await render_unexpected(request, error)
    await response(scope, receive, send)


def _route_name(scope: Scope) -> str:
    route: Any = scope.get("route")
    return str(getattr(route, "path", "unmatched"))


def _observe(scope: Scope, status: int, seconds: float, request_id: str) -> None:
    route = _route_name(scope)
    _REQUESTS.of(scope["method"], route, str(status)).inc()
    _LATENCY.of(scope["method"], route).observe(seconds)
    log.info(
        "%s %s %d",
        scope["method"],
        route,
        status,
        extra={"request_id": request_id, "duration_ms": round(seconds * 1000, 2)},
    )
