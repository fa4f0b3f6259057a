"""The provider service: the HTTP endpoint the hub calls to fetch an owned record
(docs/protocol.md §4)."""

from __future__ import annotations

import copy
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import _commitment
from ._batches import ThreadBatches
from ._config import AdapterConfig
from ._errors import (
    PROBLEM_PREFIX,
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    OnceonlyError,
    UpstreamError,
)
from ._events import EVENT_TOKEN_TYPE, ChangePublisher, EventHandler, add_event_routes
from ._http import (
    bearer,
    check_media_types,
    problem_response,
    receive_body,
    send_json,
    unexpected,
    went_away,
)
from ._hubkeys import HubDirectory
from ._ops import READINESS_KEPT_SECONDS, ProviderMetrics, SharedCheck, readiness_problems
from ._reqtoken import (
    SUBJECT_RULE,
    RequestClaims,
    RequestTokenVerifier,
    subject_digest,
    subject_problem,
)
from ._rest import RestSource
from ._sources import RecordSource, SourceError, StoreSource, close_sources, subject_free
from ._sql import SqlSource
from ._store import RecordStore, ServedEntry, timestamp
from .logs import withheld

__all__ = ["create_provider_app", "problem_response"]

logger = logging.getLogger("adapters.provider")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class _QueryBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    subject: str = Field(min_length=1, max_length=256, description=SUBJECT_RULE)
    purpose: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{0,63}$")
    consumer: str = Field(min_length=1, max_length=128)
    version: int = Field(ge=1)

    @field_validator("subject")
    @classmethod
    def _subject_rule(cls, subject: str) -> str:
        problem = subject_problem(subject)
        if problem is not None:
            raise ValueError(problem)
        return subject


@dataclass
class _Trail:
    """What the served-log keeps about one request; filled in as it is learnt."""

    item: str
    # The caller's X-Request-Id (or one made here), echoed and logged for tracing only:
    # it is not signed, so the served-log never keys on it
    trace_id: str
    request_id: str | None = None  # the hub's, from its signed request token
    consumer: str | None = None
    purpose: str | None = None
    subject_sha256: str | None = None
    subject_pseudonym: str | None = None  # as the hub's audit entry keeps it
    commitment: str | None = None
    commitment_key: str | None = None
    # The request token's jti and when it may be forgotten, once the token held: only
    # such a request leaves a served-log entry (decision 0030)
    spent: tuple[str, float] | None = None

    def entry(self, *, outcome: str, reason: str | None) -> ServedEntry:
        return ServedEntry(
            request_id=self.request_id,
            time=timestamp(),
            item=self.item,
            consumer=self.consumer,
            purpose=self.purpose,
            subject_sha256=self.subject_sha256,
            outcome=outcome,
            reason=reason,
            commitment=self.commitment,
            commitment_key=self.commitment_key,
            subject_pseudonym=self.subject_pseudonym,
        )


def _hub_client() -> httpx.AsyncClient:
    """The client that reaches the hub's keys (proxies and CA bundle from the
    environment, which can be wrong: building it is part of checking the settings)."""
    return httpx.AsyncClient(timeout=5.0)


def open_and_close(config: AdapterConfig) -> None:
    """Open what ``create_provider_app(config)`` opens (the store, each item's source,
    the client that reaches the hub), then close it all: a setting that would stop the
    app being built fails here alike (``onceonly adapter serve --workers N`` checks
    with it before any worker starts)."""
    store = RecordStore(config.store_path)
    try:
        owned = config.open_sources(store=store)

        async def close() -> None:
            try:
                await _hub_client().aclose()
            finally:
                await close_sources(owned.values())

        anyio.run(close)
    finally:
        store.close()


def create_provider_app(
    config: AdapterConfig,
    *,
    sources: dict[str, RecordSource] | None = None,
    http_client: httpx.AsyncClient | None = None,
    on_event: EventHandler | None = None,
    readiness_kept: float = READINESS_KEPT_SECONDS,
) -> FastAPI:
    """The provider service for ``config``'s department.

    ``sources`` maps item ids to record sources; by default each item in
    ``config.items`` reads the source its settings name (opened here, so that a bad
    setting fails now, and closed with the app). ``http_client`` (owned by
    the caller) reaches the hub; by default the app makes and closes its own.
    ``on_event`` is called (once per event id) with each change event the hub
    delivers to this department. ``/readyz`` answers one readiness check for
    ``readiness_kept`` seconds (5), and concurrent calls share one check.

    Example::

        app = create_provider_app(load_config("civil-registry.toml"))
        uvicorn.run(app, host="127.0.0.1", port=9101)
    """
    store = RecordStore(config.store_path)
    try:
        owned = config.open_sources(store=store) if sources is None else {}
    except OnceonlyError:
        store.close()
        raise
    http = http_client or _hub_client()
    directory = HubDirectory(config.hub_url, http=http)
    served = sources if sources is not None else owned
    verifier = RequestTokenVerifier(directory, audience=config.department)
    verifier.remember(store.spent_tokens())  # a restart forgets no spent request token
    provider = _Provider(
        sources=served,
        store=store,
        directory=directory,
        verifier=verifier,
        metrics=ProviderMetrics(frozenset(served)),
        readiness_kept=readiness_kept,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            async with _announcing_changes(config, store):
                yield
        finally:
            await close_sources(owned.values())
            provider.close()
            if http_client is None:
                await http.aclose()
            store.close()

    app = FastAPI(title=f"Onceonly adapter: {config.department}", lifespan=lifespan)
    query = Route(QUERY_PATH, _QueryEndpoint(provider), methods=["POST"])
    app.add_middleware(_RequestIdMiddleware, query=query)
    app.add_exception_handler(HTTPException, _http_exception)
    _add_routes(app, provider, query=query)
    _describe_query_route(app, path=QUERY_PATH, body=_QueryBody.model_json_schema())

    events = RequestTokenVerifier(
        directory, audience=config.department, token_type=EVENT_TOKEN_TYPE
    )
    add_event_routes(app, verifier=events, store=store, handler=on_event)
    return app


@asynccontextmanager
async def _announcing_changes(config: AdapterConfig, store: RecordStore) -> AsyncIterator[None]:
    """With a client id configured, publish the store's changes to the hub meanwhile."""
    if config.client_id is None:
        yield
        return
    from ._client import AsyncHubClient
    from ._keys import load_or_create_key

    key = load_or_create_key(config.key_path)
    async with (
        AsyncHubClient(config.hub_url, client_id=config.client_id, key=key, retries=0) as client,
        anyio.create_task_group() as group,
    ):
        group.start_soon(ChangePublisher(store, client).run)
        yield
        group.cancel_scope.cancel()


def _add_routes(app: FastAPI, provider: _Provider, *, query: Route) -> None:
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Ready when every source that can be probed answers and the trail takes a write."""
        problems = await provider.readiness()
        if problems:
            error = UpstreamError("; ".join(problems), status=503, problem_type="unavailable")
            return problem_response(error)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(provider.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    # A plain ASGI app rather than a FastAPI endpoint, the one the hub calls for every
    # exchange (docs/performance.md, issue 18): `_RequestIdMiddleware` hands it its POSTs
    # before the framework's routing; among the routes, first, it answers other methods
    # (405) as routing does.
    app.router.routes.insert(0, query)


QUERY_PATH = "/v1/items/{item_id}/records/query"


class _QueryEndpoint:
    """``POST /v1/items/{item_id}/records/query`` (docs/protocol.md §4): the answer, or
    a problem document, once the served-log entry of either is written; an unexpected
    exception before the answer is a 500 ``internal-error`` problem like any refusal.
    It echoes the request's trace id (``X-Request-Id``) itself."""

    def __init__(self, provider: _Provider) -> None:
        self._provider = provider

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        trail = _Trail(item=scope["path_params"]["item_id"], trace_id=scope["state"]["trace_id"])
        answer: dict[str, Any] = {}
        refusal: OnceonlyError | None = None
        try:
            check_media_types(
                content_type=_header(scope, b"content-type"), accept=_header(scope, b"accept")
            )
            answer = await self._provider.answer(
                authorization=_header(scope, b"authorization"), receive=receive, trail=trail
            )
        except OnceonlyError as error:
            refusal = error
        except HTTPException as error:  # a body limit of an app this one is embedded in
            refusal = _refusal_of(error)
        except ClientDisconnect:  # not a fault: nobody is left to answer; its entry is kept
            refusal = went_away(logger, trace_id=trail.trace_id)
        except Exception as error:  # a fault: answered 500, with its entry when the token held
            refusal = unexpected(error, log=logger, trace_id=trail.trace_id)
        try:
            refusal = await self._provider.settle(trail, error=refusal)
        except Exception as failed:  # no answer, and no refusal, leaves without its entry
            logger.error("the served-log entry was not written: %s", type(failed).__name__)
            refusal = UpstreamError(
                "the served-log could not be written", status=503, problem_type="unavailable"
            )
        echoed = (_TRACE_HEADER, trail.trace_id.encode("latin-1"))
        if refusal is not None:
            response = problem_response(refusal)
            response.raw_headers.append(echoed)
            await response(scope, receive, send)
        else:
            await send_json(send, answer, extra_header=echoed)


def _header(scope: Scope, name: bytes) -> str:
    """The first value of header ``name`` (lower case), as Starlette's ``Headers`` reads it."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


class _Provider:
    def __init__(
        self,
        *,
        sources: dict[str, RecordSource],
        store: RecordStore,
        directory: HubDirectory,
        verifier: RequestTokenVerifier,
        metrics: ProviderMetrics,
        readiness_kept: float,
    ) -> None:
        self.metrics = metrics
        self.readiness = SharedCheck(self._readiness, keep=readiness_kept)
        self._sources = sources
        self._store = store
        self._directory = directory
        self._verifier = verifier
        # Served-log entries are written in group commits, each before its answer, each
        # with its request token's jti spent for good in the same commit
        self._trail = ThreadBatches(store.spend_and_record, name="served-log")

    def close(self) -> None:
        self._trail.close()

    async def answer(
        self, *, authorization: str, receive: Receive, trail: _Trail
    ) -> dict[str, Any]:
        """Verify, fetch and validate; the answer body of a ``200``. The body is read
        from ``receive`` once the request token holds.

        :raises OnceonlyError: a refusal, to render as a problem response.
        """
        try:
            claims = await self._verifier.verify(bearer(authorization))
        except AuthenticationFailed as refused:
            self.metrics.token_refused(refused.problem_type)
            raise
        trail.spent = (claims.jti, claims.forget_after)
        trail.request_id = claims.request_id
        trail.consumer, trail.purpose = claims.consumer, claims.purpose
        trail.subject_sha256, trail.subject_pseudonym = (
            claims.subject_sha256,
            claims.subject_pseudonym,
        )
        query = _parse_body(await receive_body(receive))
        try:
            _check_claims_match(claims, item=trail.item, query=query)
        except AuthenticationFailed as refused:
            self.metrics.token_refused(refused.problem_type)
            raise
        record = await self._fetch(trail.item, query.subject)
        await self._check_record(record, item=trail.item, version=query.version)
        trail.commitment_key = _commitment.new_key()
        try:
            trail.commitment = _commitment.commit(trail.commitment_key, record)
        except (ValueError, TypeError, UnicodeError) as error:  # no RFC 8785 form
            logger.error("source for %s gave a record with no canonical JSON form", trail.item)
            raise UpstreamError(
                "the source's record has a value with no canonical JSON form",
                status=502,
                problem_type="source-invalid-record",
            ) from error
        return {"item": trail.item, "version": query.version, "record": record}

    async def settle(self, trail: _Trail, *, error: OnceonlyError | None) -> OnceonlyError | None:
        """Count the request and log one line, holding neither subject nor token; when
        its request token held, first write its served-log entry, spending the token's
        jti for good in the same commit (decision 0030). The refusal to answer: ``error``,
        or the replay the commit found (another process on this ``data_dir`` spent the
        jti first), which leaves no entry.

        :raises Exception: the entry could not be written.
        """
        if trail.spent is not None:
            jti, forget_after = trail.spent
            entry = trail.entry(**_outcome(error))
            if not await self._trail((jti, forget_after, entry)):
                error = AuthenticationFailed("the request token was already used")
                self.metrics.token_refused(error.problem_type)
                trail.spent = None
        facts = _outcome(error)
        self.metrics.served(trail.item, facts["outcome"])
        if logger.isEnabledFor(logging.INFO):
            _log_line(trail, logged=trail.spent is not None, error=error, **facts)
        return error

    async def _readiness(self) -> list[str]:
        problems = await readiness_problems(self._sources, self._store)
        hub = await self._directory.unreachable()
        if hub is not None:
            problems.append(f"the hub's keys cannot be had: {hub}")
        return problems

    async def _fetch(self, item: str, subject: str) -> dict[str, Any]:
        source = self._sources.get(item)
        if source is None:
            raise NotFound("no record for this subject")
        started = time.perf_counter()
        try:
            record = await source.fetch(item, subject)
        except SourceError as error:
            told = _subject_free_error(error, source=source, subject=subject)
            logger.error("source for %s failed: %s", item, told.detail)
            raise told from None
        except Exception as error:
            logger.error("source for %s failed: %s", item, type(error).__name__)
            raise UpstreamError(
                "the record source failed", status=503, problem_type="source-unavailable"
            ) from error
        finally:
            self.metrics.source_took(item, time.perf_counter() - started)
        if record is None:
            raise NotFound("no record for this subject")
        return record

    async def _check_record(self, record: object, *, item: str, version: int) -> None:
        problem = (await self._directory.validator(item, version)).violation(record)
        if problem is not None or not isinstance(record, dict):
            raise UpstreamError(
                f"the source's record does not match {item} v{version}: {problem}",
                problem_type="source-invalid-record",
            )


# Sources whose error details are this package's own texts, which never quote a subject
_OWN_SOURCES = (SqlSource, RestSource, StoreSource)


def _subject_free_error(error: SourceError, *, source: object, subject: str) -> SourceError:
    """``error`` as it may be logged and answered: a department's own source (a Python
    callable, a `RecordSource` of its own) words its message as it likes, and may quote
    the subject, so only its type is told; the shipped sources' details are kept, any
    subject in them blanked all the same."""
    if isinstance(source, _OWN_SOURCES):
        detail = subject_free(error.detail, subject)
    else:
        detail = f"the record source raised {type(error).__name__} (its message is withheld)"
    told = copy.copy(error)
    told.detail, told.args = detail, (detail,)
    return told


def _outcome(error: OnceonlyError | None) -> dict[str, Any]:
    """The ``outcome`` and ``reason`` of an answer (``error`` None) or of a refusal."""
    if error is None:
        return {"outcome": "ok", "reason": None}
    outcome = "refused" if (error.status or 500) < 500 else "failed"
    return {"outcome": outcome, "reason": error.problem_type}


_SERVED_FACTS = ("request_id", "trace_id", "item", "consumer", "purpose", "outcome", "reason")
_SERVED_LINE = "query " + " ".join(f"{name}=%s" for name in _SERVED_FACTS)
_LOGGED_ITEM = 128  # characters of an item id kept in a line (registered ids are shorter)
_REFUSED_FACTS = ("trace_id", "item", "outcome", "reason", "detail")
_REFUSED_LINE = "query refused, no entry: " + " ".join(f"{name}=%s" for name in _REFUSED_FACTS)


def _log_line(
    trail: _Trail, *, logged: bool, error: OnceonlyError | None, outcome: str, reason: str | None
) -> None:
    """One line per query: an entry's facts, or for a refusal that left no entry, why
    (its detail: the adapter's own fixed texts, never the caller's input)."""
    item = trail.item[:_LOGGED_ITEM]  # a path's item is the caller's: bounded,
    item = item if item.isprintable() else ascii(item)  # and no forged lines
    values: tuple[str | None, ...]
    if logged:
        values = (trail.request_id, trail.trace_id, item, trail.consumer, trail.purpose,
                  outcome, reason)  # fmt: skip
        facts, message = dict(zip(_SERVED_FACTS, values, strict=True)), _SERVED_LINE
    else:
        detail = error.detail if error is not None else None
        values = (trail.trace_id, item, outcome, reason, detail)
        facts, message = dict(zip(_REFUSED_FACTS, values, strict=True)), _REFUSED_LINE
    # extra: members of the line when logs are JSON (cli --log-json)
    logger.info(message, *values, extra=facts)


def _parse_body(body: bytes) -> _QueryBody:
    try:
        document = json.loads(body, object_pairs_hook=_refuse_duplicate_keys)
    except (json.JSONDecodeError, _DuplicateKey) as error:  # where, never the text
        raise InvalidRequest(f"the body is not a valid JSON document: {error}") from error
    except (ValueError, RecursionError) as error:  # in its own words, not Python's
        raise InvalidRequest(f"the body is not a valid JSON document: {_why(error)}") from error
    try:
        return _QueryBody.model_validate(document)
    except ValidationError as error:
        fields = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'body'}: {problem['msg']}"
            for problem in error.errors(include_url=False, include_input=False)
        )
        raise InvalidRequest(f"the body is invalid: {fields}") from error


class _DuplicateKey(ValueError):
    pass


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise _DuplicateKey("duplicate key")
    return document


def _why(error: ValueError | RecursionError) -> str:
    """What Python's own words say (its codec and the byte's position, its integer
    digit limit and ``sys.set_int_max_str_digits()``), as a problem's detail may
    (RFC 9457 §5: no implementation detail)."""
    if isinstance(error, RecursionError):
        return "it is nested too deeply"
    if isinstance(error, UnicodeDecodeError):
        return "it is not valid UTF-8 (RFC 8259 §8.1)"
    return f"a number has more than {sys.get_int_max_str_digits()} digits"


def _check_claims_match(claims: RequestClaims, *, item: str, query: _QueryBody) -> None:
    expected = {
        "item": (claims.item, item),
        "purpose": (claims.purpose, query.purpose),
        "version": (claims.version, query.version),
        "sub": (claims.consumer, query.consumer),
        "subject_sha256": (claims.subject_sha256, subject_digest(query.subject)),
    }
    for name, (claimed, actual) in expected.items():
        if claimed != actual:
            raise AuthenticationFailed(f"the request token's {name} does not match the request")


def _refusal_of(exc: HTTPException) -> OnceonlyError:
    slug = "not-found" if exc.status_code == 404 else "invalid-request"
    return OnceonlyError(str(exc.detail), status=exc.status_code, problem_type=slug)


async def _http_exception(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    response = problem_response(_refusal_of(exc))
    for name, value in (exc.headers or {}).items():  # a 405's Allow (RFC 9110 §15.5.6)
        response.headers[name] = value
    return response


_TRACE_HEADER = b"x-request-id"


class _RequestIdMiddleware:
    """Take the caller's ``X-Request-Id`` (or make one), expose it as
    ``request.state.trace_id`` and echo it on the response. For tracing only: it is
    not signed, so what the served-log keeps as the hub's request id is the request
    token's ``request_id`` claim.

    A ``POST`` that the ``query`` route matches goes to it straight from here, past the
    framework's exception handlers, exit stack and routing, which it does not use (it
    answers every refusal itself and echoes the trace id itself): the hub calls it for
    every exchange (docs/performance.md, issue 18). Everything else goes on to ``app``.

    An exception that reaches this middleware is answered here, as a 500
    ``internal-error`` problem with the trace id, and logged once (`unexpected`), rather
    than by Starlette's last resort, which answers ``text/plain`` without the trace id
    and re-raises, so that the server logs it again with its message, which may quote
    a subject. One that comes once the answer has begun is logged, and the answer left
    incomplete, so that the server ends the connection (a truncated answer must not
    look whole).
    """

    def __init__(self, app: ASGIApp, *, query: Route) -> None:
        self._app = app
        self._query = query

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        offered = _header(scope, _TRACE_HEADER)
        request_id = offered if _REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        scope.setdefault("state", {})["trace_id"] = request_id
        if scope["method"] == "POST":
            matched, child_scope = self._query.matches(scope)
            if matched is Match.FULL:
                scope.update(child_scope)
                try:
                    await self._query.handle(scope, receive, send)
                except Exception as error:  # it answers all but a fault in sending its answer
                    _answer_began(error, trace_id=request_id)
                return
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-Id"] = request_id
                started = True
            await send(message)

        try:
            await self._app(scope, receive, send_with_id)
        except Exception as error:
            if started:
                _answer_began(error, trace_id=request_id)
                return
            response = problem_response(unexpected(error, log=logger, trace_id=request_id))
            await response(scope, receive, send_with_id)


def _answer_began(error: Exception, *, trace_id: str) -> None:
    logger.error(
        "unexpected error once the answer began, left incomplete: trace_id=%s %s",
        trace_id,
        type(error).__name__,
        exc_info=withheld(error),
        extra={"trace_id": trace_id},
    )


# --- The record query in the OpenAPI document (/openapi.json, /docs) ----------------
# The query route is a plain ASGI app tried before FastAPI's routes, so FastAPI does not
# describe it: its operation, as docs/protocol.md §4 states it, is added here.

# What every route answers for a fault of the adapter (_RequestIdMiddleware)
_FAULT = ("A fault of the adapter; logged, never described", ("internal-error",))

# The problem types the query answers, by status (docs/adapters.md, "Serve")
_QUERY_PROBLEMS: dict[int, tuple[str, tuple[str, ...]]] = {
    400: ("The body is not a valid query", ("invalid-request",)),
    401: ("The hub's request token does not hold, or was used before", ("invalid-token",)),
    404: ("No record for this subject, or an item this adapter does not serve",
          ("record-not-found",)),
    406: ("The Accept header excludes application/json", ("not-acceptable",)),
    413: ("The body is over 64 KiB", ("payload-too-large",)),
    415: ("The body is not application/json", ("unsupported-media-type",)),
    500: _FAULT,
    502: ("The source's record does not match the item's schema", ("source-invalid-record",)),
    503: ("The source failed, the hub's keys could not be fetched to check the token,"
          " or the served-log could not be written",
          ("source-unavailable", "hub-unavailable", "unavailable")),
}  # fmt: skip

# What the hub's change events route answers besides 200, 405 and 500 (_events.py)
_EVENT_PROBLEMS: dict[int, tuple[str, tuple[str, ...]]] = {
    400: ("The body is not a valid event", ("invalid-request",)),
    401: ("The hub's event token does not hold, was used before, or does not match the"
          " body", ("invalid-token",)),
    413: ("The body is over 64 KiB", ("payload-too-large",)),
    503: ("The hub's keys could not be fetched to check the token, or the event's handler"
          " has no thread free or is still handling it (deliver it again later)",
          ("hub-unavailable", "handler-busy")),
}  # fmt: skip

_EVENT_ANSWER = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {
            "type": "string",
            "enum": ["received", "duplicate"],
            "description": "duplicate: this event was received before (at-least-once"
            " delivery); it was not handed to the department's handler again",
        }
    },
}

_PROBLEM = {
    "type": "object",
    "description": "An RFC 9457 problem document",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": f"{PROBLEM_PREFIX}<slug>"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
}

_ANSWER = {
    "type": "object",
    "required": ["item", "version", "record"],
    "additionalProperties": False,
    "properties": {
        "item": {"type": "string"},
        "version": {"type": "integer", "minimum": 1},
        "record": {
            "type": "object",
            "description": "The record, valid against the item's schema in `version`",
        },
    },
}

_DESCRIPTION = """The hub asks for one subject's record of an item this department owns
(docs/protocol.md §4). `Authorization: Bearer` carries the hub's request token (a JWS,
`typ: onceonly-req+jwt`, signed with a key of the hub's JWKS), which must be addressed
to this department, unexpired and not used before, and must match the path's item and
the body. Every request whose token holds leaves one served-log entry, keyed on the
token's `request_id` claim, whatever its answer; other refusals leave none
(docs/decisions/0030-adapter-refusals-and-replay.md)."""


def _describe_query_route(app: FastAPI, *, path: str, body: dict[str, Any]) -> None:
    """Make ``app.openapi()`` describe ``POST path``, whose request body is the JSON
    Schema ``body``, and on every route the ``405`` and ``500`` that any answers."""
    made_by_fastapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = made_by_fastapi()  # kept as app.openapi_schema: completed once
            paths = document.setdefault("paths", {})
            paths[path] = {"post": _operation()}
            if "post" in paths.get(EVENTS_PATH, {}):
                _describe_events(paths[EVENTS_PATH]["post"])
            _describe_every_route(paths)
            components = document.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            schemas.update(RecordQuery={**body, "title": "RecordQuery"})
            schemas.update(RecordAnswer=_ANSWER, Problem=_PROBLEM)
            schemes = components.setdefault("securitySchemes", {})
            schemes["hubRequestToken"] = {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWS, typ onceonly-req+jwt, signed by the hub",
            }
            schemes["hubEventToken"] = {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": f"JWS, typ {EVENT_TOKEN_TYPE}, signed by the hub",
            }
        assert app.openapi_schema is not None  # made just above, or before
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
EVENTS_PATH = "/v1/events"


def _describe_events(operation: dict[str, Any]) -> None:
    """The change events route's answers, which FastAPI cannot see: its handler reads
    the request itself (docs/adapters.md, "Change events")."""
    responses = operation.setdefault("responses", {})
    responses["200"] = {
        "description": "The event was received (or had been)",
        "content": {"application/json": {"schema": _EVENT_ANSWER}},
    }
    for status, answer in _EVENT_PROBLEMS.items():
        responses[str(status)] = _problem(*answer)
    operation["security"] = [{"hubEventToken": []}]


def _describe_every_route(paths: dict[str, Any]) -> None:
    """Add to every operation what its path answers whatever the route: ``405`` for
    any other method (RFC 9110 §15.5.6; ``HEAD`` too, which no route here serves), a
    problem document whose ``Allow`` header lists the path's methods, as the record
    query answers it too (`_add_routes`); and ``500`` for a fault of the adapter."""
    for operations in paths.values():
        described = [method for method in _METHODS if method in operations]
        allowed = ", ".join(method.upper() for method in described)
        for method in described:
            responses = operations[method].setdefault("responses", {})
            responses["405"] = _wrong_method(allowed)
            responses.setdefault("500", _problem(*_FAULT))


def _wrong_method(allowed: str) -> dict[str, Any]:
    allow = {
        "description": "The methods this path answers (RFC 9110 §10.2.1), in any order",
        "schema": {"type": "string"},
        "example": allowed,
    }
    described = _problem(f"Another method than {allowed}", ("invalid-request",))
    return {**described, "headers": {"Allow": allow}}


def _problem(description: str, slugs: tuple[str, ...]) -> dict[str, Any]:
    """A response of problem documents of the types ``slugs``."""
    return {
        "description": description,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
        "x-problem-types": list(slugs),
    }


def _operation() -> dict[str, Any]:
    problems = {str(status): _problem(*answer) for status, answer in _QUERY_PROBLEMS.items()}
    return {
        "summary": "Answer the hub's query for a record",
        "description": _DESCRIPTION,
        "operationId": "query_record",
        "security": [{"hubRequestToken": []}],
        "parameters": [
            {"name": "item_id", "in": "path", "required": True, "schema": {"type": "string"}},
            {
                "name": "X-Request-Id",
                "in": "header",
                "required": False,
                "description": "Echoed on the answer, for tracing only",
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
            },
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/RecordQuery"}}
            },
        },
        "responses": {
            "200": {
                "description": "The record",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/RecordAnswer"}}
                },
            },
            **problems,
        },
    }
