"""One error base, one renderer: every failure leaves the hub as RFC 9457 problem JSON.

Domain errors subclass :class:`~onceonly.hub.kit.problems.HubError` beside the code
that raises them. The handlers here render them, audit them when the request is an
audited one, and make sure that no stack trace and no 500 for bad input ever reaches
a caller.

An error of the database that says it is away (:func:`database_away`: it cannot be
reached, or will not take work now) is no fault of the hub: it is answered 503
``database-unavailable`` with ``Retry-After`` and logged as one warning, without a
traceback (decision 0049). The log line says how it is away, and the problem's detail
whether the hub could not connect to it or lost it on the way.

A client that closes its connection before its request's body is whole (Starlette's
``ClientDisconnect``, from any route that reads a body) is no fault of the hub either:
it is logged at INFO without a traceback, counted under status 499 (nginx's "client
closed request"), and an audited request's entry is ``refused`` ``client-disconnected``.
Unless the server refused the body as malformed HTTP/1.1 (a bad chunk) and closed the
connection itself: the client was answered 400 (by the server), so the request is
logged and counted as that 400, and an audited request's entry is ``refused``
``invalid-request``.
"""

import logging
import sqlite3
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from onceonly.hub.db import driver_code
from onceonly.hub.kit.asgi_scope import MALFORMED_BODY
from onceonly.hub.kit.problems import (
    DatabaseUnavailable,
    HubError,
    InvalidRequest,
    problem_response,
    render,
)

log = logging.getLogger("onceonly.errors")

# Seconds a client is asked to wait when the database is away (decision 0049): a
# restart or a failover takes seconds, and a retry sooner mostly meets the same outage.
DATABASE_RETRY_AFTER = 5
# A server that is going or is not there yet: admin_shutdown, crash_shutdown,
# cannot_connect_now, too_many_connections (PostgreSQL, appendix A), beside class 08.
_AWAY_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def database_away(error: BaseException) -> str | None:
    """How the database is away, when ``error`` says that it cannot be reached or will
    not take work now (decision 0049): a phrase with the driver's code or class, for a
    log line. None for any other error, a bug's included. Never the error's text, which
    may quote a statement or its values."""
    if isinstance(error, PoolTimeout):
        return "no pooled connection was free in time (sqlalchemy TimeoutError)"
    if not isinstance(error, DBAPIError):
        return None
    cause = error.orig
    if isinstance(cause, sqlite3.Error):  # a file does not go away: only its lock is held
        busy = getattr(cause, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
        return f"the lock was not free in time ({driver_code(cause)})" if busy else None
    if error.connection_invalidated:  # the dialect's is_disconnect
        return f"the connection was lost ({driver_code(cause)})"
    if not isinstance(cause, psycopg.OperationalError):
        return None
    return _postgresql_away(cause, in_statement=error.statement is not None)


# How database_away's phrase starts for a connection that could not be made, and for
# one whose server did not answer it (the detail of the 503 tells them apart).
_NO_CONNECTION = "no connection could be made"
_NO_ANSWER = f"{_NO_CONNECTION}: the server did not answer in time"


def _postgresql_away(cause: psycopg.OperationalError, *, in_statement: bool) -> str | None:
    code, sqlstate = driver_code(cause), cause.sqlstate
    if isinstance(cause, psycopg.errors.PipelineAborted):  # an earlier statement's failure
        return None
    if isinstance(cause, psycopg.errors.ConnectionTimeout):  # past libpq's connect_timeout
        return f"{_NO_ANSWER} ({code})"
    # Raised by a connection attempt: libpq's (refused, the login failed) carries its
    # connection, psycopg's own (a host name that does not resolve) comes outside any
    # statement. Neither has a SQLSTATE.
    if cause.pgconn is not None or (sqlstate is None and not in_statement):
        return f"{_NO_CONNECTION} ({code})"
    if sqlstate is None:
        return f"the connection was lost ({code})"  # libpq's own: the server sends a SQLSTATE
    if sqlstate is not None and (sqlstate[:2] == "08" or sqlstate in _AWAY_SQLSTATES):
        return f"the server will not take work now ({code})"
    return None


_MALFORMED_BODY_DETAIL = "the request's body is not well-formed HTTP/1.1 (RFC 9112)"


class ClientDisconnected(HubError):
    """The client closed its connection before the hub had read its request whole.

    Its answer is never read: 499 is nginx's "client closed request", for the access
    log and the metrics (``onceonly_http_requests_total{status="499"}``), which a 500
    would have counted against the hub. Below 500, so an audited request's entry is
    ``refused`` with this slug as its reason."""

    status = 499
    slug = "client-disconnected"
    title = "Client closed the request"


async def _audit_refusal(request: Request, error: HubError) -> JSONResponse:
    """Write the refusal to the audit log when the request is audited; no entry, no answer.

    Except when the refusal says the database is away: its entry then fails for the same
    reason, and the answer stays the one that says so, with its ``Retry-After`` (the
    audit writer logs and counts its own failure)."""
    scope = getattr(request.state, "audit", None)
    if scope is not None and scope.owes_failure(error):
        try:
            await scope.record_failure(error)
        except HubError as audit_error:
            if not isinstance(error, DatabaseUnavailable):
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
    a problem that tells nothing of the cause. An error that says the database is away
    (:func:`database_away`) gets the 503 instead, and one warning without a traceback;
    a client gone before its body was read, :class:`ClientDisconnected` and one INFO
    record (a body the server refused as malformed, the 400 it answered, and one INFO
    record).

    onceonly.hub.middleware's middleware calls it and answers, so the connection stays open and
    nothing else prints the traceback; Starlette's own last resort (installed below,
    for a fault in the middleware itself) would re-raise, and the server would then
    print a second traceback and close the connection."""
    request_id = getattr(request.state, "request_id", None)
    malformed = request.scope.get("state", {}).get(MALFORMED_BODY)
    if isinstance(exc, ClientDisconnect) and malformed:
        log.info(
            "the request's body was not well-formed HTTP/1.1; the server answered 400",
            extra={"request_id": request_id},
        )
        # Counted and audited as the answer the client got (the protocol keeps its
        # detail); the connection is closed, so nothing more reaches the client.
        detail = malformed if isinstance(malformed, str) else _MALFORMED_BODY_DETAIL
        return await _audit_refusal(request, InvalidRequest(detail))
    if isinstance(exc, ClientDisconnect):
        log.info(
            "the client disconnected before its request was read; counted as 499",
            extra={"request_id": request_id},
        )
        detail = "the client closed the connection before its request was read"
        return await _audit_refusal(request, ClientDisconnected(detail))
    away = database_away(exc)
    if away is not None:
        log.warning(
            "the database is unavailable: %s; answered 503 %s",
            away,
            DatabaseUnavailable.slug,
            extra={"request_id": request_id},
        )
    else:
        log.error("unexpected error", exc_info=exc, extra={"request_id": request_id})
    return await _audit_refusal(request, failure_of(exc))


def failure_of(exc: Exception) -> HubError:
    """The problem an exception is answered and audited as (:func:`render_unexpected`'s;
    also for a failure audited under a scope of its own, not the request's)."""
    if isinstance(exc, HubError):
        return exc
    away = database_away(exc)
    if away is not None:
        return _database_unavailable(away)
    return HubError("the hub could not complete the request; it has been logged")


def _database_unavailable(away: str) -> DatabaseUnavailable:
    """The 503 for the database away as ``away`` (:func:`database_away`) says: its
    detail tells a connection that could not be made, and whether the server did not
    answer it, from the database met another way (lost, refusing work, busy)."""
    if away.startswith(_NO_ANSWER):
        detail = "the hub's database did not answer a new connection in time"
    elif away.startswith(_NO_CONNECTION):
        detail = "the hub could not connect to its database"
    else:
        detail = "the hub cannot reach its database at the moment"
    return DatabaseUnavailable(
        f"{detail}; try again later", headers={"Retry-After": str(DATABASE_RETRY_AFTER)}
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(HubError, _on_hub_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, render_unexpected)
