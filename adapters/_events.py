"""Change events on the department's side: receiving them from the hub, and publishing
the store's changes to it.

The hub delivers ``POST /v1/events`` at least once, signed with a hub key
(``typ: onceonly-event+jwt``, audience = this department). The adapter checks the
signature and claims and hands the event to the department's handler, which may
fetch the record again under its own grant, until the handler has succeeded once:
only then is the event id kept, and a redelivery acknowledged without the handler
(decision 0062). Events carry no record data. The other way, `ChangePublisher`
announces the store's changes to the hub.
"""

from __future__ import annotations

import inspect
import json
import logging
import random
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
from ._errors import AuthenticationFailed, InvalidRequest, OnceonlyError, UpstreamError
from ._http import bearer_token, problem_response, went_away
from ._http import read_body as read_json_body
from ._reqtoken import RequestTokenVerifier, subject_digest
from ._store import ReceivedEvent, RecordStore
from .logs import withheld

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
# Worker threads of their own for plain (sync) handlers: one that blocks (a lock, a call
# with no timeout) then holds these, never anyio's default threads, which the SQL and
# sync Python sources, the record store and the record queries share
HANDLER_THREADS = 4
# Seconds a delivery waits for its turn (another delivery of its event is being handled)
# or for a free handler thread before it is answered 503 handler-busy: the hub retries
# later. Well under the hub's owner_timeout (5 s), so the handler may still run in it
HANDLER_WAIT = 2.0
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
    """Every claim that binds the body matches it. ``published_at`` (the body's text, by
    which receivers order events) is compared when the token has it: a hub older than
    the claim signs none, and its deliveries are still taken."""
    expected = {
        "event_id": event.event_id,
        "item": event.item,
        "kind": event.kind,
        "sub": event.owner,
        "subject_sha256": subject_digest(event.subject),
    }
    if "published_at" in claims:
        expected["published_at"] = event.published_at
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
        self._threads: _HandlerThreads | None = None  # made on the event loop, when needed

    async def receive(self, request: Request) -> dict[str, str]:
        claims = await self._verifier.verify_claims(bearer_token(request))
        event = _parse_event(await read_json_body(request))
        _check_claims(claims, event)
        async with self._turn(event.event_id):
            if event.event_id in self._handled:
                return {"status": "duplicate"}
            if self._handler is not None:
                await _hand_over(self._handler, event, threads=self._handler_threads())
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
            await _within_wait(turn.lock.acquire(), "another delivery of this event is handled")
            try:
                yield
            finally:
                turn.lock.release()
        finally:
            turn.holders -= 1
            if turn.holders == 0:
                del self._turns[event_id]

    def _handler_threads(self) -> _HandlerThreads:
        if self._threads is None:
            self._threads = _HandlerThreads()
        return self._threads

    def _remember(self, event_id: str) -> None:
        self._handled[event_id] = None
        if len(self._handled) > REMEMBERED_EVENTS:
            self._handled.popitem(last=False)


@dataclass
class _Turn:
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    holders: int = 0  # the delivery that has the turn and those waiting for it


class _HandlerThreads:
    """The `HANDLER_THREADS` worker threads of plain handlers, and the bounded wait for
    one. ``slots`` is waited for (`HANDLER_WAIT` at most); ``threads``, as large, is the
    limiter the run takes, which never makes it wait: a slot is held until the thread
    has returned, since a run in a thread is not abandoned when its delivery goes."""

    def __init__(self) -> None:
        self.slots = anyio.CapacityLimiter(HANDLER_THREADS)
        self.threads = anyio.CapacityLimiter(HANDLER_THREADS)

    async def run(self, handler: EventHandler, event: DeliveredEvent) -> object:
        borrower = object()
        await _within_wait(
            self.slots.acquire_on_behalf_of(borrower),
            f"all {HANDLER_THREADS} threads of the event handler are busy",
        )
        try:
            return await anyio.to_thread.run_sync(handler, event, limiter=self.threads)
        finally:
            self.slots.release_on_behalf_of(borrower)


class _HandlerBusy(UpstreamError):
    default_status = 503
    default_problem_type = "handler-busy"
    title = "Event handler busy"


async def _within_wait(acquired: Awaitable[None], busy: str) -> None:
    """Await ``acquired`` (a lock, a thread), `HANDLER_WAIT` seconds at most.

    :raises _HandlerBusy: it took longer: the delivery is answered 503, and the hub
        delivers it again later.
    """
    try:
        with anyio.fail_after(HANDLER_WAIT):
            await acquired
    except TimeoutError:
        log.warning("event delivery answered 503: %s", busy)
        raise _HandlerBusy(f"{busy}: deliver it again later") from None


async def _hand_over(
    handler: EventHandler, event: DeliveredEvent, *, threads: _HandlerThreads
) -> None:
    """Call ``handler``: a coroutine function on the event loop, any other callable in one
    of ``threads`` (it may block, as a sync `CallableSource` may), awaiting what it
    returns if that is awaitable."""
    outcome: object
    if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        type(handler).__call__  # an object whose __call__ is a coroutine function
    ):
        outcome = handler(event)
    else:
        outcome = await threads.run(handler, event)
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
    event at the hub, never a second one. A change the hub refuses for good is
    dropped, logged as an ``ERROR``, so that it cannot block the ones behind it: only
    when the hub's own answer to the publish request refuses that change
    (`refused_for_good`), never for a refusal of the token request, an answer that is
    not the hub's problem document (a proxy's page), or a ``401``. A token holds the
    ``publish:`` scopes of the items the department owned when it was issued, so the
    client answers ``403 insufficient-scope`` by sending the change once more with a
    token asked for after a refusal of its item (`AsyncHubClient.publish`, decision
    0065): a change to an item registered since the last token is published, and only
    one that token is refused too is dropped.

    While the hub cannot be reached, fails, or refuses the client (its key was
    replaced at the hub, or it is not registered yet), changes wait and the rounds are
    tried again ever less often: ``interval`` doubled after each failed round, with
    jitter, up to `QUICK_CAP` seconds for a hub that is away or failing and up to
    ``max_wait`` (`MAX_COME_BACK`) for a refusal that lasts (``401``: the client is
    refused; the token endpoint refuses the DPoP proof, as when the adapter's clock is
    off; ``429`` without ``Retry-After``), since each attempt then costs the hub a
    refused ``token.issue`` audit entry. When the hub says how long to wait
    (``Retry-After`` on a ``503`` or ``429``), the next round waits that long, if it is
    longer than ``interval``, but no longer than ``max_wait``. Each new failure
    (another error class, status or problem type) is logged once, naming them and the
    wait, and publishing again after failures is logged once; never a subject or a
    token (decision 0062).
    """

    def __init__(
        self,
        store: RecordStore,
        client: AsyncHubClient,
        *,
        interval: float = 1.0,
        max_wait: float = MAX_COME_BACK,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._store, self._client, self._interval = store, client, interval
        self._max_wait, self._jitter = max_wait, jitter
        self._stopped_by: OnceonlyError | None = None  # what ended the last round early
        self._failing: _Failure | None = None  # the state of the rounds failing now
        self._failed_rounds = 0  # rounds in a row that failed, whatever the state

    async def run(self) -> None:
        while True:
            failure: Exception | None
            try:
                await self.publish_pending()
                failure = self._stopped_by
            except Exception as error:  # the store, say: keep announcing in the next round
                failure = error
            await anyio.sleep(self._settle(failure))

    def _settle(self, failure: Exception | None) -> float:
        """Note how the round ended, logging a change of state; seconds to the next."""
        if failure is None:
            if self._failing is not None:
                log.info(
                    "publishing changes resumed after %d failed attempts (the last: %s)",
                    self._failed_rounds,
                    self._failing,
                )
            self._failing, self._failed_rounds = None, 0
            return self._interval
        self._failed_rounds += 1
        wait, plan = wait_after(
            failure,
            failures=self._failed_rounds,
            interval=self._interval,
            max_wait=self._max_wait,
            jitter=self._jitter,
        )
        state = _Failure.of(failure)
        if state != self._failing:
            _log_failure(failure, state, wait=wait, plan=plan)
        else:
            log.debug("publishing changes failed again: %s; %s", state, plan)
        self._failing = state
        return wait

    async def publish_pending(self, limit: int = 100) -> int:
        """Publish up to ``limit`` waiting changes; how many the hub accepted."""
        changes = await anyio.to_thread.run_sync(self._store.pending_changes, limit)
        self._stopped_by = None
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
            except OnceonlyError as error:
                if not refused_for_good(error):
                    self._stopped_by = error
                    break  # the hub is away, fails or refuses us: try again later
                _log_dropped(error, item=change.item)
            settled.append(change.id)
        if settled:
            await anyio.to_thread.run_sync(self._store.forget_changes, settled)
        return accepted


# A hub that is away or failing is tried again at least this often (seconds), so that
# changes go out soon after it is back
QUICK_CAP = 30.0
# Refusals that asking again soon will not end: the hub refused the client itself (an
# operator must register its key again), or asked for fewer requests without saying when
_LASTING = frozenset({401, 429})
# The hub's refusals of a DPoP proof, at its token endpoint (400, RFC 9449 §5) or at the
# publish route (401, §7.1): mostly a proof whose iat is off the hub's clock by more than
# its clock_skew, which lasts until the adapter's host sets its clock right
_PROOF_REFUSED = frozenset({"oauth-invalid-dpop-proof", "invalid-dpop-proof"})
# The publish route's refusals of one change that no later attempt would end
# (docs/events.md, docs/protocol.md §3), by status: the department does not own the item
# (its token has no publish scope for it: the client has already asked once more with a
# token newer than a refusal of the item, decision 0065; or it is not the owner), the
# item is unknown, not shared or retired, the change's subject is refused (padded, not
# NFC), or its idempotency key names another event. The token endpoint's types (oauth-*,
# client-*) are never among them
_REFUSED_FOR_GOOD: dict[int, frozenset[str]] = {
    400: frozenset({"invalid-request"}),
    403: frozenset({"insufficient-scope", "not-owner"}),
    404: frozenset({"unknown-item"}),
    409: frozenset({"item-not-shared"}),
    410: frozenset({"item-retired"}),
    422: frozenset({"idempotency-key-reused"}),
}


def refused_for_good(error: OnceonlyError) -> bool:
    """Whether ``error`` is the hub's problem answer to a publish that refuses that change
    for good: a status and problem type of `_REFUSED_FOR_GOOD`, in an answer with the
    hub's request id (every answer of the hub has one; a proxy's page has neither: its
    404 is ``record-not-found`` only by the SDK's default). Anything else keeps the
    change in the outbox: "nothing acknowledged is lost" (DESIGN.md)."""
    if error.request_id is None or error.status is None:
        return False
    return error.problem_type in _REFUSED_FOR_GOOD.get(error.status, frozenset())


def _log_dropped(error: OnceonlyError, *, item: str) -> None:
    log.error(
        "change dropped: the hub refused it for good: status %s, problem type %s",
        error.status,
        error.problem_type,
        extra={"item": item, "status": error.status, "problem_type": error.problem_type},
    )


def _lasting(failure: Exception) -> bool:
    if not isinstance(failure, OnceonlyError):
        return False
    return failure.status in _LASTING or failure.problem_type in _PROOF_REFUSED


def backoff(failures: int, *, base: float, cap: float, jitter: Callable[[], float]) -> float:
    """Exponential backoff with jitter: ``base * 2^(failures-1)``, at most ``cap``, times
    a random factor in [0.5, 1) (``jitter()`` in [0, 1)), so that many adapters whose
    hub came back do not all try again in step."""
    delay = min(cap, base * 2.0 ** min(max(failures - 1, 0), 64))  # 2.0**1100 overflows
    return delay * (0.5 + jitter() / 2)


def wait_after(
    failure: Exception,
    *,
    failures: int,
    interval: float,
    max_wait: float,
    jitter: Callable[[], float],
) -> tuple[float, str]:
    """Seconds until the change publisher's next round after ``failures`` failed rounds
    in a row, the last ended by ``failure``; and that plan as its log line says it."""
    come_back = failure.retry_after if isinstance(failure, OnceonlyError) else None
    if come_back is not None:  # as the hub asked (decision 0053), within max_wait
        wait = max(interval, min(come_back, max_wait))
        again = f"publishing changes again in {_seconds(wait)} s"
        return wait, f"the hub asked to come back in {_seconds(come_back)} s; {again}"
    cap = max_wait if _lasting(failure) else min(max_wait, QUICK_CAP)
    wait = backoff(failures, base=interval, cap=cap, jitter=jitter)
    plan = f"publishing changes again in {_seconds(wait)} s, then less often"
    return wait, f"{plan}, at least every {_seconds(cap)} s, until it works"


@dataclass(frozen=True)
class _Failure:
    """What a failed round met, as the log names it: never a subject or a token."""

    kind: str  # the exception's class
    status: int | None = None
    problem_type: str | None = None

    @classmethod
    def of(cls, error: Exception) -> _Failure:
        if isinstance(error, OnceonlyError):
            return cls(type(error).__name__, error.status, error.problem_type)
        return cls(type(error).__name__)

    def __str__(self) -> str:
        if self.status is None and self.problem_type is None:
            return self.kind
        return f"{self.kind}, status {self.status}, problem type {self.problem_type}"


def _log_failure(error: Exception, state: _Failure, *, wait: float, plan: str) -> None:
    """One line for a new state of failure: ERROR when the hub refused the client or its
    DPoP proof, or the error is unexpected (an operator must act), else WARNING."""
    expected = isinstance(error, OnceonlyError)
    hint = _hint(error)
    log.log(
        logging.WARNING if expected and not hint else logging.ERROR,
        "publishing changes failed: %s%s; %s",
        state,
        hint,
        plan,
        exc_info=None if expected else withheld(error),
        extra={
            "error": state.kind,
            "status": state.status,
            "problem_type": state.problem_type,
            "wait": round(wait, 1),
        },
    )


def _hint(error: Exception) -> str:
    """What an operator should look at, when the refusal is one they must end."""
    if isinstance(error, OnceonlyError) and error.problem_type in _PROOF_REFUSED:
        return (
            " (the hub refused this adapter's DPoP proof: the adapter's clock may be off;"
            " is its time kept by NTP?)"
        )
    if isinstance(error, AuthenticationFailed):
        return " (the hub refused this adapter's client: check its key at the hub)"
    return ""


def _seconds(value: float) -> str:
    """``value`` seconds as a log line says them: whole from 10 on, else to a tenth."""
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}".removesuffix(".0")
