"""Delivering change events: at least once, signed, with backoff and dead letters.

Each hub process runs one :class:`Deliverer`. It leases due deliveries (on
PostgreSQL with ``FOR UPDATE SKIP LOCKED``, so replicas take disjoint batches;
a lease that expires because its process died is taken over), posts each event
to the subscriber's adapter, and records the outcome under its lease. A
delivery that keeps failing becomes a dead letter that operators can inspect
and replay. Receivers de-duplicate by event id, since "at least once" means a
retry after a lost acknowledgement delivers twice.

Deliveries fail closed, like the exchange (DESIGN.md, step 6 and 7): the attempt's
``event.deliver`` entry is committed before the subscriber is called, and an attempt
whose entry cannot be committed is not made (see :func:`judge` for the entries of
one delivery).
"""

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from onceonly.hub.audit import leaves
from onceonly.hub.audit.exceptions import AuditUnavailable
from onceonly.hub.audit.service import AuditLog, append_rows
from onceonly.hub.config import Settings
from onceonly.hub.db import write_connection
from onceonly.hub.events import repository
from onceonly.hub.events.repository import DueDelivery
from onceonly.hub.events.service import entitlement_refusal
from onceonly.hub.events.tokens import mint_event_token
from onceonly.hub.keys import HubKeys
from onceonly.hub.kit.base_urls import call_problem, join_path
from onceonly.hub.kit.clock import SYSTEM_CLOCK, Clock, rfc3339_ms
from onceonly.hub.kit.deadline import post_within
from onceonly.hub.metrics import delivery_attempted

log = logging.getLogger("onceonly.events")
STOP_MARGIN = 5.0  # seconds a stopping round may take beyond its attempts' timeout


@dataclass(frozen=True)
class Outcome:
    """What becomes of a delivery: its new row values, and the ``event.deliver`` entry
    (outcome and reason) committed in the same transaction, if any."""

    values: dict[str, Any]
    audit_outcome: str | None
    reason: str | None = None


def entitlement(delivery: DueDelivery) -> Outcome | None:
    """None while the subscriber may still be told of the event; otherwise the
    delivery's cancellation, without calling it, with a ``refused`` entry whose reason
    is the record query's refusal (``no-grant``: no grant held without a break since the
    event; ``item-not-shared``: the item's class is now ``none``; ``item-retired``).
    Pure: the facts were read when the delivery was claimed."""
    refusal = entitlement_refusal(
        item_id=delivery.item_id,
        lifecycle=delivery.lifecycle,
        sharing_class=delivery.sharing_class,
        granted=delivery.granted,
        department=delivery.department_id,
    )
    if refusal is None:
        return None
    return Outcome({"status": "cancelled", "last_error": refusal.title}, "refused", refusal.slug)


def backoff(attempts: int, *, base: float, cap: float, jitter: Callable[[], float]) -> float:
    """Exponential backoff with jitter: ``base * 2^(attempts-1)``, at most ``cap``, times
    a random factor in [0.5, 1) so that many failed deliveries do not retry in step."""
    delay: float = min(cap, base * 2.0 ** max(attempts - 1, 0))
    return delay * (0.5 + jitter() / 2)


def judge(
    delivery: DueDelivery,
    *,
    error: str | None,
    now: datetime,
    settings: Settings,
    jitter: Callable[[], float] = random.random,
) -> Outcome:
    """The next state of a delivery after an attempt (``error`` None: the subscriber
    acknowledged it), and the entry committed with that state. Pure, given ``jitter``.

    The ``event.deliver`` entries of one delivery, each with the department, item,
    subject pseudonym, event id and the delivery id as ``request_id``:

    - before each call to the subscriber, outcome ``ok``, committed through the audit
      writer before the call is made; if it cannot be committed the call is not made,
      the attempt is not counted and the delivery waits (:func:`postpone`);
    - after a call that was acknowledged: no further entry (the ``ok`` entry stands);
    - after a call that failed (any answer but ``2xx``, or none), or an attempt that
      could not be made (no adapter registered, or its URL is no base URL: no call, so
      no ``ok`` entry), outcome ``failed`` with reason ``delivery-failed``, or
      ``dead-letter`` when it was the last attempt, committed together with the new
      state;
    - a delivery its subscriber is no longer entitled to (:func:`entitlement`): one
      entry, outcome ``refused``, the refusal's reason, and no call.
    """
    if error is None:
        return Outcome({"status": "delivered", "delivered_at": now, "last_error": None}, None)
    attempts = delivery.attempts + 1
    if attempts >= settings.event_max_attempts:
        values = {"status": "dead", "attempts": attempts, "last_error": error[:300]}
        return Outcome(values, "failed", "dead-letter")
    delay = backoff(
        attempts, base=settings.event_retry_base, cap=settings.event_retry_cap, jitter=jitter
    )
    values = {
        "attempts": attempts,
        "last_error": error[:300],
        "next_attempt_at": now + timedelta(seconds=delay),
    }
    return Outcome(values, "failed", "delivery-failed")


def postpone(*, now: datetime, settings: Settings) -> Outcome:
    """A delivery whose attempt was not made because its audit entry could not be
    committed: due again after ``event_retry_base``, its attempts not counted. Pure."""
    values = {
        "last_error": "audit log unavailable",
        "next_attempt_at": now + timedelta(seconds=settings.event_retry_base),
    }
    return Outcome(values, None)


class Deliverer:
    """The process's delivery loop. ``start()`` in the lifespan, ``stop()`` on shutdown."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        http: httpx.AsyncClient,
        keys: HubKeys,
        settings: Settings,
        audit_log: AuditLog,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._engine, self._http, self._keys = engine, http, keys
        self._clock = clock
        self._settings, self._audit = settings, audit_log
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._held: set[str] = set()  # lease tokens of rounds not settled yet
        self._stopping = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-deliverer")

    async def stop(self) -> None:
        """End the loop between rounds: the round under way finishes (its attempts are
        bounded by ``owner_timeout``) and settles what it leased, so no database
        operation is cut off half-way (a claim cancelled mid-transaction could leave
        its deliveries leased, or on PostgreSQL row-locked, and a restarted hub would
        wait for them). Only a round that does not finish in time is cancelled; what
        it had leased is then given back."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        grace = self._settings.owner_timeout + STOP_MARGIN
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace)
        except TimeoutError:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            if self._held:
                try:
                    await asyncio.wait_for(self._release(sorted(self._held)), STOP_MARGIN)
                except Exception:
                    log.exception("could not give back leased deliveries; taken at lease end")
        self._held.clear()
        self._task = None

    def wake(self) -> None:
        """Look for due deliveries now (called after an event is published here)."""
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                handled = await self.deliver_due()
            except Exception:
                log.exception("event delivery round failed; retrying")
                handled = 0
            if handled == 0 and not self._stopping:
                try:
                    await asyncio.wait_for(self._wake.wait(), self._settings.event_poll_interval)
                except TimeoutError:
                    pass
                self._wake.clear()

    async def deliver_due(self) -> int:
        """One round: lease due deliveries, attempt each, record the outcomes."""
        now = self._clock.now()
        async with self._engine.connect() as reading:
            if not await repository.any_due(reading, now=now):
                return 0
        lease = now + timedelta(seconds=self._settings.event_lease)
        token = uuid4().hex
        self._held.add(token)  # before the claim: a stop during it still gives it back
        try:
            async with write_connection(self._engine) as conn:
                due = await repository.claim_due(
                    conn,
                    now=now,
                    lease_until=lease,
                    token=token,
                    limit=self._settings.event_batch_size,
                )
            await _all_settled(self._attempt(delivery) for delivery in due)
        except asyncio.CancelledError:  # cut off by stop(): it gives the leases back
            raise
        except Exception:  # a failed round: others may take its deliveries at once
            await self._release([token])
            self._held.discard(token)
            raise
        self._held.discard(token)  # every delivery of the round is settled
        return len(due)

    async def _release(self, tokens: list[str]) -> None:
        async with write_connection(self._engine) as conn:
            await repository.release_leases(conn, tokens=tokens)

    async def _attempt(self, delivery: DueDelivery) -> None:
        cancelled = entitlement(delivery)
        if cancelled is not None:
            await self._settle(delivery, cancelled)
            return
        error: str | None
        if not delivery.adapter_url or delivery.subject is None:
            error = "the subscriber has no adapter registered"  # no call, so no ok entry
        elif (refused := self._call_problem(delivery.adapter_url)) is not None:
            error = f"the subscriber's adapter_url is refused: {refused}"  # registered before
        elif await self._audit_call(delivery):
            url = join_path(delivery.adapter_url, "/v1/events")
            error = await self._send(delivery, url=url, subject=delivery.subject)
        else:
            await self._settle(delivery, postpone(now=self._clock.now(), settings=self._settings))
            return
        await self._settle(
            delivery, judge(delivery, error=error, now=self._clock.now(), settings=self._settings)
        )

    def _call_problem(self, url: str) -> str | None:
        settings = self._settings
        return call_problem(
            url,
            production=settings.is_production,
            loopback_allowed=settings.adapters_on_loopback,
        )

    async def _audit_call(self, delivery: DueDelivery) -> bool:
        """Commit the ``ok`` entry of the call about to be made; False if it cannot be."""
        try:
            await self._audit.append(_entry(delivery, at=self._clock.now(), outcome="ok"))
        except AuditUnavailable:
            log.warning("audit log unavailable: delivery %s waits", delivery.id)
            return False
        return True

    async def _settle(self, delivery: DueDelivery, outcome: Outcome) -> None:
        """Record the outcome and its audit entry in one transaction, unless the lease
        was lost meanwhile (the new holder then settles and audits its own attempt)."""
        entry = None
        if outcome.audit_outcome is not None:
            entry = _entry(
                delivery, at=self._clock.now(), outcome=outcome.audit_outcome, reason=outcome.reason
            )
        async with write_connection(self._engine) as conn:
            if not await repository.settle(conn, delivery=delivery, values=outcome.values):
                return
            if outcome.values.get("status") in ("delivered", "cancelled"):
                await repository.forget_subject_when_done(conn, event_id=delivery.event_id)
            if entry is not None:
                await append_rows(conn, [(entry, leaves.leaf_bytes(entry))])
        if entry is not None:
            self._audit.on_committed(entry)
        if outcome.values.get("status") == "delivered" or outcome.audit_outcome == "failed":
            delivery_attempted(  # an attempt (no grant, postponed: none was made)
                item=delivery.item_id,
                subscriber=delivery.department_id,
                delivered=outcome.audit_outcome is None,
                reason=outcome.reason,
            )

    async def _send(self, delivery: DueDelivery, *, url: str, subject: str) -> str | None:
        """POST the event to ``url`` (the subscriber adapter's ``/v1/events``); None on
        success, else why not."""
        now = int(self._clock.time())
        token = mint_event_token(
            key=self._keys.signing,
            issuer=self._settings.issuer,
            subscriber=delivery.department_id,
            owner=delivery.owner_id,
            event_id=delivery.event_id,
            item=delivery.item_id,
            kind=delivery.kind,
            subject=subject,
            now=now,
            lifetime=self._settings.request_token_lifetime,
        )
        body = {
            "event_id": delivery.event_id,
            "item": delivery.item_id,
            "kind": delivery.kind,
            "subject": subject,
            "owner": delivery.owner_id,
            "published_at": rfc3339_ms(delivery.published_at),
        }
        try:
            response = await post_within(
                self._http,
                url,
                seconds=self._settings.owner_timeout,
                json=body,
                headers={"Authorization": f"Bearer {token}", "X-Request-Id": delivery.id},
            )
        except httpx.HTTPError as error:
            return f"{type(error).__name__}"
        return None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"


async def _all_settled(attempts: Iterable[Awaitable[None]]) -> None:
    """Await every attempt, then raise the first failure: a failed round gives back its
    leases, and must not give back those of attempts still under way."""
    results = await asyncio.gather(*attempts, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _entry(
    delivery: DueDelivery, *, at: datetime, outcome: str, reason: str | None = None
) -> dict[str, Any]:
    """The delivery's entry, which the subscriber reads. A refused one (the subscriber
    may no longer be told, :func:`entitlement`) commits to the subject's pseudonym
    without showing it (decision 0069)."""
    refused = outcome == "refused"
    return leaves.build_entry(
        time=at,
        action="event.deliver",
        outcome=outcome,
        reason=reason,
        department=delivery.department_id,
        item=delivery.item_id,
        subject=None if refused else delivery.subject_pseudonym,
        sealed_subject=delivery.subject_pseudonym if refused else None,
        event=delivery.event_id,
        request_id=delivery.id,
    )
