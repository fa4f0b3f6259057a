"""HTTP pieces that the provider's and the event receiver's routes share, and the
bounded read of what the systems the adapter calls answer (`fetch_bounded`)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Send

from ._errors import PROBLEM_PREFIX, AuthenticationFailed, InvalidRequest, OnceonlyError
from .logs import withheld

MAX_BODY = 64 * 1024


def bearer_token(request: Request) -> str:
    return bearer(request.headers.get("authorization", ""))


def bearer(authorization: str) -> str:
    """The token of an ``Authorization: Bearer`` header's value (RFC 6750 §2.1)."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("a Bearer request token is required")
    return token.strip()


async def read_body(request: Request) -> bytes:
    return await receive_body(request.receive)


async def receive_body(receive: Receive) -> bytes:
    """The request's body from its ASGI messages, refused past ``MAX_BODY`` bytes.

    :raises ClientDisconnect: the client went away first (as Starlette's ``Request``).
    """
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        body += message.get("body", b"")
        if len(body) > MAX_BODY:
            raise InvalidRequest(
                f"the body exceeds {MAX_BODY} bytes", status=413, problem_type="payload-too-large"
            )
        if not message.get("more_body", False):
            return bytes(body)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer read whole by `fetch_bounded`: its status and, for a 2xx, its
    body (with no content coding; other answers' bodies are not read)."""

    status_code: int
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        """The body as JSON (UTF-8, -16 or -32, RFC 8259 §8.1), as httpx's ``json()``.

        :raises ValueError: not JSON (``RecursionError`` when nested too deep)."""
        return json.loads(self.content)


class UnreadableAnswer(Exception):
    """A 2xx answer that `fetch_bounded` refused to read whole."""


class AnswerTooLarge(UnreadableAnswer):
    """An answer's body was longer than the bytes `fetch_bounded` was allowed to read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"answer is larger than {limit} bytes")
        self.limit = limit


class AnswerEncoded(UnreadableAnswer):
    """An answer came with a content coding (``gzip``...) though `fetch_bounded` asked
    for none (``Accept-Encoding: identity``)."""

    def __init__(self) -> None:
        super().__init__("answer has a Content-Encoding other than identity, which was asked for")


async def fetch_bounded(
    http: httpx.AsyncClient, request: httpx.Request, *, deadline: float, max_bytes: int
) -> Answer:
    """Send ``request`` and read its whole answer within ``deadline`` seconds in all,
    at most ``max_bytes`` of its body. httpx's own timeout bounds each read, not the
    answer: a system that sends one byte a second, or an endless body, would hold the
    adapter (and its memory) as long as it liked.

    The request asks for no content coding (``Accept-Encoding: identity``, replacing
    any the request had) and a 2xx answer with one is refused unread: httpx decodes a
    network chunk through every coding it names in one call, before any length can be
    checked, so ``gzip, gzip`` turns some 600 bytes into hundreds of MiB (review 167).
    The bytes counted are the bytes received.

    :raises TimeoutError: no whole answer within ``deadline``.
    :raises AnswerTooLarge: a 2xx body longer than ``max_bytes``; nothing more is read.
    :raises AnswerEncoded: a 2xx answer with a ``Content-Encoding`` but ``identity``.
    :raises httpx.HTTPError: as ``send`` and reading the body raise.
    """
    request.headers["Accept-Encoding"] = "identity"
    with anyio.fail_after(deadline):
        response = await http.send(request, stream=True)
        try:
            body = await _body(response, max_bytes=max_bytes) if response.is_success else b""
        finally:
            await response.aclose()
    return Answer(status_code=response.status_code, content=body)


async def _body(response: httpx.Response, *, max_bytes: int) -> bytes:
    codings = response.headers.get_list("content-encoding", split_commas=True)
    if any(coding.strip().lower() not in ("", "identity") for coding in codings):
        raise AnswerEncoded()
    body = bytearray()
    async for chunk in response.aiter_bytes():  # with no coding, as received
        body += chunk
        if len(body) > max_bytes:
            raise AnswerTooLarge(max_bytes)
    return bytes(body)


def went_away(log: logging.Logger, *, trace_id: str) -> InvalidRequest:
    """The refusal of a request whose client went away before its body was read whole
    (a caller's timeout, a dropped connection): no fault of the adapter, so logged at
    INFO, not as an error with a traceback; nobody reads its answer."""
    log.info("the client went away before its body was read: trace_id=%s", trace_id)
    return InvalidRequest("the request's body did not arrive whole: the client went away")


def check_media_types(*, content_type: str, accept: str) -> None:
    """Refuse a body that is not ``application/json`` (415) and an ``Accept`` that
    excludes it (406), as RFC 9110 §15.5.16 and §15.5.7 describe.

    :raises InvalidRequest: ``unsupported-media-type`` or ``not-acceptable``.
    """
    if _media_type(content_type) != "application/json":
        raise InvalidRequest(
            "the body must be application/json",
            status=415,
            problem_type="unsupported-media-type",
        )
    if accept not in _ACCEPTS_JSON and not accepts_json(accept):
        raise InvalidRequest(
            "the answer is application/json, which the Accept header excludes",
            status=406,
            problem_type="not-acceptable",
        )


# Accept values that callers send most (httpx, curl and no header at all): no parsing
_ACCEPTS_JSON = frozenset({"", "*/*", "application/json"})


def _media_type(value: str) -> str:
    """The ``type/subtype`` of a media type (RFC 9110 §8.3.1), lower case, no parameters."""
    return value.partition(";")[0].strip().lower()


def accepts_json(accept: str) -> bool:
    """Whether an ``Accept`` field value (RFC 9110 §12.5.1) admits ``application/json``:
    the most specific media range that matches it (``application/json``, then
    ``application/*``, then ``*/*``) has a weight above 0. An empty value accepts all;
    a range with a weight that is not a qvalue is ignored."""
    if not accept.strip():
        return True
    weights: dict[str, float] = {}
    for media_range in accept.split(","):
        name, _, parameters = media_range.partition(";")
        weight = _weight(parameters)
        if weight is not None:
            weights.setdefault(name.strip().lower(), weight)
    for name in ("application/json", "application/*", "*/*"):
        if name in weights:
            return weights[name] > 0
    return False


def _weight(parameters: str) -> float | None:
    """The ``q`` of a media range's parameters (1 without one), None when it is not a
    qvalue (``0`` to ``1`` with up to three decimals)."""
    for parameter in parameters.split(";"):
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "q":
            text = value.strip()
            if not _QVALUE.fullmatch(text):
                return None
            return float(text)
    return 1.0


_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")


async def send_json(
    send: Send, content: Any, *, extra_header: tuple[bytes, bytes] | None = None
) -> None:
    """Answer ``200`` with ``content`` in exactly the bytes and headers of a
    ``JSONResponse``, without building one; ``extra_header`` (lower-case name, value)
    last, as appended to its ``raw_headers``."""
    body = json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
    if extra_header is not None:
        headers.append(extra_header)
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# The problem types that share their error class's title with another type, titled
# as their own (RFC 9457 §3.1.3: a summary of the problem type)
_TITLES = {
    "payload-too-large": "Payload too large",
    "unsupported-media-type": "Unsupported media type",
    "not-acceptable": "Not acceptable",
}


def problem_response(error: OnceonlyError) -> JSONResponse:
    """Render ``error`` as an RFC 9457 problem document."""
    status = error.status or 500
    slug = error.problem_type or "error"
    title = _TITLES.get(slug, error.title)
    body = {"type": PROBLEM_PREFIX + slug, "title": title, "status": status}
    body["detail"] = error.detail
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


class _InternalError(OnceonlyError):
    default_status = 500
    default_problem_type = "internal-error"
    title = "Internal error"


def unexpected(error: Exception, *, log: logging.Logger, trace_id: str) -> OnceonlyError:
    """Log ``error``, an exception that no refusal accounts for, once (its type and
    traceback, never its message: `withheld`), and return the refusal that answers it,
    a 500 ``internal-error`` that tells nothing of the cause."""
    log.error(
        "unexpected error, answered 500: trace_id=%s %s",
        trace_id,
        type(error).__name__,
        exc_info=withheld(error),
        extra={"trace_id": trace_id},
    )
    return _InternalError("the adapter could not complete the request; it has been logged")
