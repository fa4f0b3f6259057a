"""HTTP pieces that the provider's and the event receiver's routes share."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Send

from ._errors import PROBLEM_PREFIX, AuthenticationFailed, InvalidRequest, OnceonlyError

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


async def send_json(send: Send, content: Any) -> None:
    """Answer ``200`` with ``content`` in exactly the bytes and headers of a
    ``JSONResponse``, without building one."""
    body = json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def problem_response(error: OnceonlyError) -> JSONResponse:
    """Render ``error`` as an RFC 9457 problem document."""
    status = error.status or 500
    slug = error.problem_type or "error"
    body = {"type": PROBLEM_PREFIX + slug, "title": error.title, "status": status}
    body["detail"] = error.detail
    return JSONResponse(body, status_code=status, media_type="application/problem+json")
