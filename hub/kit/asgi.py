"""ASGI middleware: request ids, a hard body-size limit, no NUL in URLs, access logs, metrics.

Pure ASGI (not BaseHTTPMiddleware) so that it adds no task per request and can
stop an oversized body while it streams in.
"""

import logging
import re
import time
import uuid
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.errors import InvalidRequest, problem_response
from hub.kit.nul import NUL_DETAIL, url_has_nul

log = logging.getLogger("onceonly.access")

REQUESTS = Counter("onceonly_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "onceonly_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class _BodyTooLarge(Exception):
    pass


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = {"code": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            if url_has_nul(scope.get("path", ""), scope.get("query_string", b"")):
                await _nul_in_url(scope, receive, send_with_id)  # before any route sees it
                return
            if _declared_length(scope) > self.max_body_bytes:
                await _too_large(scope, receive, send_with_id, self.max_body_bytes)
                return
            await self.app(scope, self._limited(receive), send_with_id)
        except _BodyTooLarge:
            await _too_large(scope, receive, send_with_id, self.max_body_bytes)
        finally:
            _observe(scope, status["code"], time.perf_counter() - started, request_id)

    def _limited(self, receive: Receive) -> Receive:
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        return limited


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = bytes(value).decode("latin-1")
            if _REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = problem_response(
        status=413,
        slug="payload-too-large",
        title="Payload too large",
        detail=f"the body is larger than {limit} bytes",
    )
    await response(scope, receive, send)


async def _nul_in_url(scope: Scope, receive: Receive, send: Send) -> None:
    response = problem_response(
        status=InvalidRequest.status,
        slug=InvalidRequest.slug,
        title=InvalidRequest.title,
        detail=f"{NUL_DETAIL}: in the URL's path or query string",
    )
    await response(scope, receive, send)


def _route_name(scope: Scope) -> str:
    route: Any = scope.get("route")
    return str(getattr(route, "path", "unmatched"))


def _observe(scope: Scope, status: int, seconds: float, request_id: str) -> None:
    route = _route_name(scope)
    REQUESTS.labels(scope["method"], route, str(status)).inc()
    LATENCY.labels(scope["method"], route).observe(seconds)
    log.info(
        "%s %s %d",
        scope["method"],
        route,
        status,
        extra={"request_id": request_id, "duration_ms": round(seconds * 1000, 2)},
    )
