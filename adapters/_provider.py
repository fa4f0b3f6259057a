"""The provider service: the HTTP endpoint the hub calls to fetch an owned record
(docs/protocol.md §4)."""

from __future__ import annotations

import json
import logging
import re
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
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import _commitment
from ._batches import ThreadBatches
from ._config import AdapterConfig
from ._errors import (
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    OnceonlyError,
    UpstreamError,
)
from ._events import EVENT_TOKEN_TYPE, ChangePublisher, EventHandler, add_event_routes
from ._http import bearer, problem_response, receive_body, send_json
from ._hubkeys import HubDirectory
from ._ops import ProviderMetrics, readiness_problems
from ._reqtoken import RequestClaims, RequestTokenVerifier, subject_digest
from ._sources import RecordSource, SourceError, close_sources
from ._store import RecordStore, ServedEntry, timestamp

__all__ = ["create_provider_app", "problem_response"]

logger = logging.getLogger("adapters.provider")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class _QueryBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    subject: str = Field(min_length=1, max_length=256)
    purpose: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{0,63}$")
    consumer: str = Field(min_length=1, max_length=128)
    version: int = Field(ge=1)


@dataclass
class _Trail:
    """What the served-log keeps about one request; filled in as it is learnt."""

    request_id: str
    item: str
    consumer: str | None = None
    purpose: str | None = None
    subject_sha256: str | None = None
    subject_pseudonym: str | None = None  # as the hub's audit entry keeps it
    commitment: str | None = None
    commitment_key: str | None = None


def create_provider_app(
    config: AdapterConfig,
    *,
    sources: dict[str, RecordSource] | None = None,
    http_client: httpx.AsyncClient | None = None,
    on_event: EventHandler | None = None,
) -> FastAPI:
    """The provider service for ``config``'s department.

    ``sources`` maps item ids to record sources; by default each item in
    ``config.items`` reads the source its settings name (opened here, so that a bad
    setting fails now, and closed with the app). ``http_client`` (owned by
    the caller) reaches the hub; by default the app makes and closes its own.
    ``on_event`` is called (once per event id) with each change event the hub
    delivers to this department.

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
    http = http_client or httpx.AsyncClient(timeout=5.0)
    directory = HubDirectory(config.hub_url, http=http)
    served = sources if sources is not None else owned
    provider = _Provider(
        sources=served,
        store=store,
        directory=directory,
        verifier=RequestTokenVerifier(directory, audience=config.department),
        metrics=ProviderMetrics(frozenset(served)),
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
    app.add_middleware(_RequestIdMiddleware)
    app.add_exception_handler(HTTPException, _http_exception)
    _add_routes(app, provider)

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


def _add_routes(app: FastAPI, provider: _Provider) -> None:
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

    # First of the routes, and a plain ASGI app rather than a FastAPI endpoint: it is
    # the one the hub calls for every exchange (docs/performance.md, issue 18).
    query = Route(QUERY_PATH, _QueryEndpoint(provider), methods=["POST"])
    app.router.routes.insert(0, query)


QUERY_PATH = "/v1/items/{item_id}/records/query"


class _QueryEndpoint:
    """``POST /v1/items/{item_id}/records/query`` (docs/protocol.md §4): the answer, or
    a problem document, once the served-log entry of either is written."""

    def __init__(self, provider: _Provider) -> None:
        self._provider = provider

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        trail = _Trail(
            request_id=scope["state"]["request_id"], item=scope["path_params"]["item_id"]
        )
        try:
            answer = await self._provider.answer(
                authorization=_header(scope, b"authorization"), receive=receive, trail=trail
            )
        except OnceonlyError as error:
            if await self._logged(trail, error, scope, receive, send):
                await problem_response(error)(scope, receive, send)
            return
        if await self._logged(trail, None, scope, receive, send):
            await send_json(send, answer)

    async def _logged(
        self,
        trail: _Trail,
        error: OnceonlyError | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> bool:
        """Write the served-log entry; when it cannot be written, answer 503 instead
        (no answer, and no refusal, leaves without its entry)."""
        try:
            await self._provider.log(trail, error=error)
        except Exception as failed:
            logger.error("the served-log entry was not written: %s", type(failed).__name__)
            refused = UpstreamError(
                "the served-log could not be written", status=503, problem_type="unavailable"
            )
            await problem_response(refused)(scope, receive, send)
            return False
        return True


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
    ) -> None:
        self.metrics = metrics
        self._sources = sources
        self._store = store
        self._directory = directory
        self._verifier = verifier
        # Served-log entries are written in group commits, each before its answer
        self._trail = ThreadBatches(store.record_served_many, name="served-log")

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

    async def log(self, trail: _Trail, *, error: OnceonlyError | None) -> None:
        """Write the served-log entry and one log line; neither holds the subject."""
        status = 200 if error is None else error.status or 500
        outcome = "ok" if error is None else "refused" if status < 500 else "failed"
        reason = None if error is None else error.problem_type
        entry = ServedEntry(**vars(trail), time=timestamp(), outcome=outcome, reason=reason)
        await self._trail(entry)
        self.metrics.served(trail.item, outcome)
        if not logger.isEnabledFor(logging.INFO):
            return
        item = trail.item if trail.item.isprintable() else ascii(trail.item)  # no forged lines
        facts = {"request_id": trail.request_id, "item": item, "consumer": trail.consumer,
                 "purpose": trail.purpose, "outcome": outcome, "reason": reason}  # fmt: skip
        logger.info(
            "query request_id=%s item=%s consumer=%s purpose=%s outcome=%s reason=%s",
            *facts.values(),
            extra=facts,  # members of the line when logs are JSON (cli --log-json)
        )

    async def readiness(self) -> list[str]:
        return await readiness_problems(self._sources, self._store)

    async def _fetch(self, item: str, subject: str) -> dict[str, Any]:
        source = self._sources.get(item)
        if source is None:
            raise NotFound("no record for this subject")
        started = time.perf_counter()
        try:
            record = await source.fetch(item, subject)
        except SourceError as error:
            logger.error("source for %s failed: %s", item, error.detail)
            raise
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


def _parse_body(body: bytes) -> _QueryBody:
    try:
        document = json.loads(body, object_pairs_hook=_refuse_duplicate_keys)
    except (ValueError, RecursionError) as error:
        raise InvalidRequest(f"the body is not a valid JSON document: {error}") from error
    try:
        return _QueryBody.model_validate(document)
    except ValidationError as error:
        fields = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'body'}: {problem['msg']}"
            for problem in error.errors(include_url=False, include_input=False)
        )
        raise InvalidRequest(f"the body is invalid: {fields}") from error


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("duplicate key")
    return document


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


async def _http_exception(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    slug = "not-found" if exc.status_code == 404 else "invalid-request"
    error = OnceonlyError(str(exc.detail), status=exc.status_code, problem_type=slug)
    return problem_response(error)


class _RequestIdMiddleware:
    """Take the caller's ``X-Request-Id`` (or make one), expose it as
    ``request.state.request_id`` and echo it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        offered = Headers(scope=scope).get("x-request-id", "")
        request_id = offered if _REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-Id"] = request_id
            await send(message)

        await self._app(scope, receive, send_with_id)
