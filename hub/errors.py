"""One error base, one renderer: every failure leaves the hub as RFC 9457 problem JSON.

Domain errors subclass :class:`HubError` beside the code that raises them, and set
``status``, ``slug`` and ``title``. The handlers here render them, audit them when
the request is an audited one, and make sure that no stack trace and no 500 for
bad input ever reaches a caller.
"""

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("onceonly.errors")

PROBLEM_TYPE_PREFIX = "urn:onceonly:problem:"
PROBLEM_CONTENT_TYPE = "application/problem+json"
# The members RFC 9457 §3.1 defines; an extension member never takes their place.
PROBLEM_MEMBERS = frozenset({"type", "title", "status", "detail", "instance"})


class HubError(Exception):
    """Base of every error the hub answers with (RFC 9457 §3)."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    @property
    def outcome(self) -> str:
        """How the audit log names this failure: the caller's fault or ours."""
        return "refused" if self.status < 500 else "failed"


class InvalidRequest(HubError):
    status = 400
    slug = "invalid-request"
    title = "Invalid request"


class PayloadTooLarge(HubError):
    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class RequestHeadersTooLarge(HubError):
    """RFC 6585 §5: the request's header fields are too large, in total."""

    status = 431
    slug = "request-header-fields-too-large"
    title = "Request header fields too large"


class Unavailable(HubError):
    status = 503
    slug = "unavailable"
    title = "Service unavailable"


def problem_response(
    *,
    status: int,
    slug: str,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """An RFC 9457 problem document. ``extra`` adds extension members (§3.2); it can
    never replace a member the RFC defines (§3.1: ``type``, ``title``, ``status``,
    ``detail``, ``instance``), so ``status`` is always the HTTP status code."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    clashing = sorted(set(extra or {}) & PROBLEM_MEMBERS)
    if clashing:
        log.error("problem extension members dropped: %s", ", ".join(clashing))
    body.update((k, v) for k, v in (extra or {}).items() if k not in PROBLEM_MEMBERS)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_CONTENT_TYPE)


def render(error: HubError) -> JSONResponse:
    return problem_response(
        status=error.status,
        slug=error.slug,
        title=error.title,
        detail=error.detail,
        headers=error.headers,
        extra=error.extra,
    )


async def _audit_refusal(request: Request, error: HubError) -> JSONResponse:
    """Write the refusal to the audit log when the request is audited; no entry, no answer."""
    scope = getattr(request.state, "audit", None)
    if scope is not None and not scope.recorded:
        try:
            await scope.record_failure(error)
        except HubError as audit_error:
            return render(audit_error)
    return render(error)


async def _on_hub_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HubError)
    return await _audit_refusal(request, exc)


def _describe(errors: Any) -> str:
    """Summarize validation errors without echoing the (possibly personal) input."""
    parts = []
    for error in list(errors)[:5]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not valid"


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return await _audit_refusal(request, InvalidRequest(_describe(exc.errors())))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    titles = {404: ("not-found", "Not found"), 405: ("method-not-allowed", "Method not allowed")}
    slug, title = titles.get(exc.status_code, ("http-error", "HTTP error"))
    return problem_response(
        status=exc.status_code,
        slug=slug,
        title=title,
        detail=str(exc.detail),
        headers=getattr(exc, "headers", None),
    )


async def render_unexpected(request: Request, exc: Exception) -> JSONResponse:
    """The 500 for an exception that no handler took: one log record (with the
    traceback, and the request id), an audit entry when the request is audited, and
    a problem that tells nothing of the cause.

    onceonly.hub.kit.asgi's middleware calls it and answers, so the connection stays open and
    nothing else prints the traceback; Starlette's own last resort (installed below,
    for a fault in the middleware itself) would re-raise, and the server would then
    print a second traceback and close the connection."""
    request_id = getattr(request.state, "request_id", None)
    log.error("unexpected error", exc_info=exc, extra={"request_id": request_id})
    error = HubError("the hub could not complete the request; it has been logged")
    return await _audit_refusal(request, error)


def install(app: FastAPI) -> None:
    app.add_exception_handler(HubError, _on_hub_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, render_unexpected)
