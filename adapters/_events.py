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

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._errors import AuthenticationFailed, InvalidRequest, OnceonlyError
from ._provider import _bearer_token as bearer_token
from ._provider import _read_body as read_json_body
from ._provider import problem_response
from ._reqtoken import RequestTokenVerifier, subject_digest
from ._store import ReceivedEvent, RecordStore

__all__ = ["EVENT_TOKEN_TYPE", "DeliveredEvent", "EventHandler", "add_event_routes"]

EVENT_TOKEN_TYPE = "onceonly-event+jwt"
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
