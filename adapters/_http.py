"""HTTP pieces that the provider's and the event receiver's routes share."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from ._errors import PROBLEM_PREFIX, AuthenticationFailed, InvalidRequest, OnceonlyError

MAX_BODY = 64 * 1024


def bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("a Bearer request token is required")
    return token.strip()


async def read_body(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise InvalidRequest(
                f"the body exceeds {MAX_BODY} bytes", status=413, problem_type="payload-too-large"
            )
    return bytes(body)


def problem_response(error: OnceonlyError) -> JSONResponse:
    """Render ``error`` as an RFC 9457 problem document."""
    status = error.status or 500
    slug = error.problem_type or "error"
    body = {"type": PROBLEM_PREFIX + slug, "title": error.title, "status": status}
    body["detail"] = error.detail
    return JSONResponse(body, status_code=status, media_type="application/problem+json")
