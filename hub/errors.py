"""One error base, one renderer: every failure leaves the hub as RFC 9457 problem JSON.

Domain errors subclass :class:`~onceonly.hub.kit.problems.HubError` beside the code
that raises them. The handlers here render them, audit them when the request is an
audited one, and make sure that no stack trace and no 500 for bad input ever reaches
a caller.
"""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from onceonly.hub.kit.problems import HubError, InvalidRequest, problem_response, render

log = logging.getLogger("onceonly.errors")


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


async def handled(request: Request, error: HubError | RequestValidationError) -> JSONResponse:
    """The answer the installed handlers give for ``error``: for a route served outside
    the framework's routing (onceonly.hub.exchange.endpoints.ExchangeFastPath)."""
    if isinstance(error, RequestValidationError):
        return await _on_validation_error(request, error)
    return await _on_hub_error(request, error)


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

    onceonly.hub.middleware's middleware calls it and answers, so the connection stays open and
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
