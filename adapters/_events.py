"""Change events on the department's side: receiving them from the hub.

The hub delivers ``POST /v1/events`` at least once, signed with a hub key
(``typ: onceonly-event+jwt``, audience = this department). The adapter checks the
signature and claims, keeps each event id once (a redelivery is acknowledged but
not handled twice) and hands new events to the department's handler, which may
fetch the record again under its own grant. Events carry no record data.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import ClientDisconnect

from ._client import AsyncHubClient
from ._errors import AccessDenied, AuthenticationFailed, InvalidRequest, NotFound, OnceonlyError
from ._http import bearer_token, problem_response, went_away
from ._http import read_body as read_json_body
from ._reqtoken import RequestTokenVerifier, subject_digest
from ._store import ReceivedEvent, RecordStore

__all__ = [
    "EVENT_TOKEN_TYPE",
    "ChangePublisher",
    "DeliveredEvent",
    "EventHandler",
    "add_event_routes",
]

EVENT_TOKEN_TYPE = "onceonly-event+jwt"
# The longest the change publisher waits when the hub says when to come back: a
# Retry-After of hours or years (a proxy's maintenance page, a mistaken header) would
# otherwise stop the outbox for that long
MAX_COME_BACK = 300.0
# Event ids handled lately that this process remembers, to answer a redelivery (a lost
# acknowledgement, a retry after the hub's timeout) without the handler: the hub's
# retries of one event come within its retry schedule, long before this many others
REMEMBERED_EVENTS = 10_000
log = logging.getLogger("onceonly.adapter.events")


class DeliveredEvent(BaseModel):
    """One change event as the hub delivers it (docs/protocol.md §7)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(min_length=1, max_length=64)
    item: str = Field(min_length=1, max_length=128)
    kind: str = Field(pattern=r"^(changed|deleted)$")
    subject: str = Field(min_length=1, max_length=256)
    owner: str = Field(min_length=1, max_length=128)
    published_at: str = Field(max_length=40)


EventHandler = Callable[[DeliveredEvent], Awaitable[None] | None]


def _check_claims(claims: dict[str, object], event: DeliveredEvent) -> None:
    expected = {
        "event_id": event.event_id,
        "item": event.item,
        "kind": event.kind,
        "sub": event.owner,
        "subject_sha256": subject_digest(event.subject),
    }
    for name, value in expected.items():
        if claims.get(name) != value:
            raise AuthenticationFailed(f"the event token's {name} does not match the body")


class _Receiver:
    """Hands each delivered event to the handler until the handler has succeeded once.

    An event id is kept in the store (the de-duplication register) only once the
    handler has returned: a handler that raised leaves nothing behind, so the hub's
    retry, which it makes for any answer but a ``2xx``, hands the event to it again,
    after a restart too (decision 0062). Deliveries of one event id take turns in
    this process, so that the handler never runs twice at once for one event; the
    ids handled lately are remembered, so that a delivery that waited for its turn,
    or a redelivery after a lost acknowledgement, is answered ``duplicate`` without
    the handler. The store's register settles the rest: a redelivery of an event
    handled before the process started is handled again (the handler must be
    idempotent) and answered ``duplicate``.
    """

    def __init__(
        self, *, verifier: RequestTokenVerifier, store: RecordStore, handler: EventHandler | None
    ) -> None:
        self._verifier, self._store, self._handler = verifier, store, handler
        self._turns: dict[str, _Turn] = {}  # event ids being handled here, and their waiters
        self._handled: OrderedDict[str, None] = OrderedDict()  # the latest, oldest first

    async def receive(self, request: Request) -> dict[str, str]:
        claims = await self._verifier.verify_claims(bearer_token(request))
        event = _parse_event(await read_json_body(request))
        _check_claims(claims, event)
        async with self._turn(event.event_id):
            if event.event_id in self._handled:
                return {"status": "duplicate"}
            if self._handler is not None:
                await _hand_over(self._handler, event)
            first = await anyio.to_thread.run_sync(
                self._store.record_received_event, _received(event)
            )
            self._remember(event.event_id)
        if not first:
            return {"status": "duplicate"}
        log.info("event received", extra={"event_id": event.event_id, "item": event.item})
        return {"status": "received"}

    @asynccontextmanager
    async def _turn(self, event_id: str) -> AsyncIterator[None]:
        """Hold the one turn of ``event_id`` in this process."""
        turn = self._turns.setdefault(event_id, _Turn())
        turn.holders += 1
        try:
            async with turn.lock:
                yield
        finally:
            turn.holders -= 1
            if turn.holders == 0:
                del self._turns[event_id]

    def _remember(self, event_id: str) -> None:
        self._handled[event_id] = None
        if len(self._handled) > REMEMBERED_EVENTS:
            self._handled.popitem(last=False)


@dataclass
class _Turn:
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    holders: int = 0  # the delivery that has the turn and those waiting for it


async def _hand_over(handler: EventHandler, event: DeliveredEvent) -> None:
    """Call ``handler``: a coroutine function on the event loop, any other callable in a
    worker thread (it may block, as a sync `CallableSource` may), awaiting what it
    returns if that is awaitable."""
    outcome: Awaitable[None] | None
    if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        type(handler).__call__  # an object whose __call__ is a coroutine function
    ):
        outcome = handler(event)
    else:
        outcome = await anyio.to_thread.run_sync(handler, event)
    if inspect.isawaitable(outcome):
        await outcome


def _parse_event(body: bytes) -> DeliveredEvent:
    """The delivered event of ``body``, a flat JSON object.

    :raises InvalidRequest: not JSON, nested too deep to parse (its depth is bounded by
        the parser's recursion limit), or not an event.
    """
    try:
        return DeliveredEvent.model_validate(json.loads(body))
    except RecursionError as error:
        raise InvalidRequest("the event is not valid: its JSON is nested too deep") from error
    except (ValueError, ValidationError) as error:
        raise InvalidRequest(f"the event is not valid: {type(error).__name__}") from error


def _received(event: DeliveredEvent) -> ReceivedEvent:
    return ReceivedEvent(
        event_id=event.event_id,
        item=event.item,
        kind=event.kind,
        owner=event.owner,
        subject_sha256=subject_digest(event.subject),
        received_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
    )


def add_event_routes(
    app: FastAPI,
    *,
    verifier: RequestTokenVerifier,
    store: RecordStore,
    handler: EventHandler | None,
) -> None:
    """Serve ``POST /v1/events`` on the provider app."""
    receiver = _Receiver(verifier=verifier, store=store, handler=handler)

    @app.post("/v1/events")
    async def receive_event(request: Request) -> JSONResponse:
        try:
            return JSONResponse(await receiver.receive(request))
        except OnceonlyError as error:
            return problem_response(error)
        except ClientDisconnect:
            return problem_response(went_away(log, trace_id=request.state.trace_id))


class ChangePublisher:
    """Announces the store's changes to the hub, at least once.

    Every `RecordStore.put`, `delete` and import row notes a change in the store's
    outbox, in the same transaction as the record. This task publishes them in
    order and forgets each one the hub accepted. Each change carries its own
    idempotency key, sent with every attempt: a change published again because the
    hub's answer was lost (or the adapter stopped before forgetting it) is the same
    event at the hub, never a second one. While the hub cannot be reached
    or refuses the client (not registered yet), changes wait and are tried again;
    a change the hub refuses for good (an item this department does not own, say)
    is dropped with a warning, so that it cannot block the ones behind it. When the
    hub says how long to wait (``Retry-After`` on a ``503`` or ``429``), the next round
    waits that long, if it is longer than ``interval``, but no longer than ``max_wait``
    (`MAX_COME_BACK`), and says so in a warning.
    """

    def __init__(
        self,
        store: RecordStore,
        client: AsyncHubClient,
        *,
        interval: float = 1.0,
        max_wait: float = MAX_COME_BACK,
    ) -> None:
        self._store, self._client, self._interval = store, client, interval
        self._max_wait = max_wait
        self._come_back: float | None = None  # the hub's Retry-After in the last round

    async def run(self) -> None:
        while True:
            try:
                await self.publish_pending()
            except Exception:  # keep announcing whatever happened to one round
                log.exception("publishing changes failed; will retry")
            await anyio.sleep(self._next_wait())

    def _next_wait(self) -> float:
        """Seconds until the next round: ``interval``, or the hub's ``Retry-After`` when
        it named one, up to ``max_wait``."""
        if self._come_back is None:
            return self._interval
        wait = max(self._interval, min(self._come_back, self._max_wait))
        log.warning(
            "the hub asked to come back in %.0f s; publishing changes again in %.0f s",
            self._come_back,
            wait,
        )
        return wait

    async def publish_pending(self, limit: int = 100) -> int:
        """Publish up to ``limit`` waiting changes; how many the hub accepted."""
        changes = await anyio.to_thread.run_sync(self._store.pending_changes, limit)
        self._come_back = None
        settled: list[int] = []
        accepted = 0
        for change in changes:
            try:
                await self._client.publish(
                    change.item,
                    change.subject,
                    kind=change.kind,
                    idempotency_key=change.idempotency_key,
                )
                accepted += 1
            except (AccessDenied, NotFound, InvalidRequest) as refused:
                log.warning("change dropped: %s", refused.problem_type, extra={"item": change.item})
            except OnceonlyError as unavailable:
                self._come_back = unavailable.retry_after
                break  # the hub is down or does not know us yet: try again later
            settled.append(change.id)
        if settled:
            await anyio.to_thread.run_sync(self._store.forget_changes, settled)
        return accepted
