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
from collections.abc import Awaitable, Callable
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
    def __init__(
        self, *, verifier: RequestTokenVerifier, store: RecordStore, handler: EventHandler | None
    ) -> None:
        self._verifier, self._store, self._handler = verifier, store, handler

    async def receive(self, request: Request) -> dict[str, str]:
        claims = await self._verifier.verify_claims(bearer_token(request))
        try:
            event = DeliveredEvent.model_validate(json.loads(await read_json_body(request)))
        except (ValueError, ValidationError) as error:
            raise InvalidRequest(f"the event is not valid: {type(error).__name__}") from error
        _check_claims(claims, event)
        if not self._store.record_received_event(_received(event)):
            return {"status": "duplicate"}
        if self._handler is not None:
            outcome = self._handler(event)
            if inspect.isawaitable(outcome):
                await outcome
        log.info("event received", extra={"event_id": event.event_id, "item": event.item})
        return {"status": "received"}


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
