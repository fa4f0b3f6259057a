"""Delivering change events: at least once, signed, with backoff and dead letters.

Each hub process runs one :class:`Deliverer`. It leases due deliveries (on
PostgreSQL with ``FOR UPDATE SKIP LOCKED``, so replicas take disjoint batches;
a lease that expires because its process died is taken over), posts each event
to the subscriber's adapter, and records the outcome under its lease. Up to
``event_batch_size`` attempts are under way at once, at most a quarter of them to one
subscriber, so one that does not answer holds up no other (decision 0088); of an
answer only the status is read. A
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
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
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
from onceonly.hub.events.exceptions import NotSubscribed
from onceonly.hub.events.repository import DueDelivery
from onceonly.hub.events.service import entitlement_refusal
from onceonly.hub.events.tokens import mint_event_token
from onceonly.hub.keys import HubKeys
from onceonly.hub.kit.base_urls import call_problem, join_path
from onceonly.hub.kit.clock import SYSTEM_CLOCK, Clock, rfc3339_ms
from onceonly.hub.kit.deadline import post_for_status
from onceonly.hub.kit.problems import HubError
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


def entitlement(delivery: DueDelivery, *, skew: timedelta) -> Outcome | None:
    """None while the subscriber may still be told of the event; otherwise the
    delivery's cancellation, without calling it, with a ``refused`` entry whose reason
    is the record query's refusal (``no-grant``: no grant held without a break since the
    event; ``item-not-shared``: the item's class is now ``none``; ``item-retired``), or
    else ``not-subscribed``: the department is not subscribed by a subscription made
    before the event (:func:`subscribed_in_time`). Pure: the facts were read when the
    delivery was claimed."""
    refusal: HubError | None = entitlement_refusal(
        item_id=delivery.item_id,
        lifecycle=delivery.lifecycle,
        sharing_class=delivery.sharing_class,
        granted=delivery.granted,
        department=delivery.department_id,
    )
    if refusal is None and not subscribed_in_time(delivery, skew=skew):
        refusal = NotSubscribed(f"{delivery.department_id!r} unsubscribed from the item")
    if refusal is None:
        return None
    return Outcome({"status": "cancelled", "last_error": refusal.title}, "refused", refusal.slug)


def subscribed_in_time(delivery: DueDelivery, *, skew: timedelta) -> bool:
    """Whether the delivery's department is subscribed by a subscription made before the
    event was published, up to ``skew`` after it (the hub's ``clock_skew``): the
    subscription's time is one hub process's clock, the event's another's, and an event
    published just after a subscription, by a replica whose clock is behind, must not be
    lost. A subscription made again later than that (after unsubscribing) does not bring
    the event back. Pure."""
    made = delivery.subscribed_at
    return made is not None and made <= delivery.published_at + skew


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


SUBSCRIBER_SHARE = 4
"""A subscriber has at most a quarter of the deliverer's attempts under way (of
``event_batch_size``; at least one): one that does not answer holds those until
``owner_timeout``, never the others' (decision 0088)."""


def subscriber_slots(batch_size: int) -> int:
    """How many attempts to one subscriber may be under way at once. Pure."""
    return max(1, batch_size // SUBSCRIBER_SHARE)


def share_slots(
    candidates: Iterable[tuple[str, str]],
    *,
    free: int,
    busy: Mapping[str, int],
    per_subscriber: int,
) -> list[str]:
    """The ids of the due ``candidates`` ((id, department), the longest due first) to
    attempt now: at most ``free`` in all, and none that would give its department more
    than ``per_subscriber`` attempts under way, with ``busy`` under way already. Pure."""
    taken = Counter(busy)
    chosen: list[str] = []
    for delivery_id, department in candidates:
        if len(chosen) >= free:
            break
        if taken[department] < per_subscriber:
            taken[department] += 1
            chosen.append(delivery_id)
    return chosen


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
        # lease tokens of claims not settled yet, each with its deliveries under way
        self._held: dict[str, int] = {}
        self._stopping = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-deliverer")

    async def stop(self) -> None:
        """End the loop: the round under way leases no more, and its attempts under way
        finish (each bounded by ``owner_timeout``) and settle what they leased, so no database
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
        failed = 0  # rounds failed in a row: an outage is logged whole once, then counted
        while not self._stopping:
            try:
                handled = await self.deliver_due()
            except Exception as error:
                failed += 1
                if failed == 1:
                    log.exception("event delivery round failed; retrying")
                else:
                    log.warning(
                        "event delivery round failed again (%s), %d rounds in a row; retrying",
                        type(error).__name__,
                        failed,
                    )
                handled = 0
            else:
                if failed:
                    log.warning("event delivery rounds succeed again, after %d failed", failed)
                failed = 0
            if handled == 0 and not self._stopping:
                try:
                    await asyncio.wait_for(self._wake.wait(), self._settings.event_poll_interval)
                except TimeoutError:
                    pass
                self._wake.clear()

    async def deliver_due(self) -> int:
        """One round: attempt due deliveries, at most ``event_batch_size`` at once and at
        most :func:`subscriber_slots` of them to one subscriber, claiming more as attempts
        end, until nothing that may be claimed is due and every attempt has settled (a
        stopping deliverer claims no more). How many were attempted.

        An attempt that failed (its outcome could not be recorded) or a claim that
        failed, its look for due deliveries included, ends the round: no more is
        claimed, the attempts under way settle, then the first failure is raised. Never
        are attempts under way cut off by a failure, nor their leases given back; when
        the round ends, however it ends (failed, or cancelled by :meth:`stop`), the
        leases of what it claimed and did not settle are given back (others may take
        them at once)."""
        flight = _Flight()
        try:
            async with asyncio.TaskGroup() as group:  # cancelled (stop): so are its attempts
                while True:  # nothing here raises but a cancellation: failures go to flight
                    if not self._stopping and flight.failure is None:
                        for delivery in await self._claim(flight):
                            flight.busy[delivery.department_id] += 1
                            group.create_task(self._attempt_in(flight, delivery))
                    if not flight.under_way():
                        break
                    try:  # an attempt that ends, or a publish here, wakes the round
                        await asyncio.wait_for(
                            self._wake.wait(), self._settings.event_poll_interval
                        )
                    except TimeoutError:
                        pass
                    self._wake.clear()
        finally:
            await self._give_back(flight)
        if flight.failure is not None:
            raise flight.failure
        return flight.attempted

    async def _give_back(self, flight: "_Flight") -> None:
        """Release the leases the round took and did not settle (a failed or cut-off
        claim or attempt), and let their tokens go; bounded, as :meth:`stop` is. Ones that
        cannot be given back are kept for :meth:`stop`, and taken over at lease end."""
        unsettled = sorted(token for token in flight.tokens if token in self._held)
        if not unsettled:
            return
        try:
            await asyncio.wait_for(self._release(unsettled), STOP_MARGIN)
        except Exception as error:
            log.warning(
                "could not give back %d leases (%s); taken at lease end",
                len(unsettled),
                type(error).__name__,
            )
            return
        for token in unsettled:
            del self._held[token]

    async def _claim(self, flight: "_Flight") -> list[DueDelivery]:
        """Lease the due deliveries the round has room for (none if none is due: a look
        that takes no write lock). A failure, of the look or of the lease, is kept in
        ``flight`` and nothing is leased: it never leaves the round's task group, which
        would cut off every attempt under way."""
        try:
            return await self._lease_due(flight)
        except Exception as error:
            flight.fail(error)
            return []

    async def _lease_due(self, flight: "_Flight") -> list[DueDelivery]:
        settings = self._settings
        free = settings.event_batch_size - flight.under_way()
        per_subscriber = subscriber_slots(settings.event_batch_size)
        full = {d for d, busy in flight.busy.items() if busy >= per_subscriber}
        now = self._clock.now()
        if free <= 0:
            return []
        async with self._engine.connect() as reading:
            if not await repository.any_due(reading, now=now, excluded=full):
                return []
        token = uuid4().hex
        # held before the write: a claim cut off after it may have leased some, which the
        # round's end (or stop) gives back
        self._held[token] = 0
        flight.tokens.add(token)
        async with write_connection(self._engine) as conn:
            candidates = await repository.due_candidates(conn, now=now, limit=free, excluded=full)
            chosen = share_slots(
                candidates, free=free, busy=flight.busy, per_subscriber=per_subscriber
            )
            lease = now + timedelta(seconds=settings.event_lease)
            due = await repository.lease(conn, ids=chosen, now=now, lease_until=lease, token=token)
        if due:
            self._held[token] = len(due)
        else:
            del self._held[token]
        flight.attempted += len(due)
        return due

    async def _attempt_in(self, flight: "_Flight", delivery: DueDelivery) -> None:
        """One attempt of the round, which wakes when it ends. Its lease token is let go
        once every delivery leased under it is settled; one that failed or was cut off
        keeps it held, for the round's end to give back."""
        token = delivery.lease_token
        try:
            await self._attempt(delivery)
        except Exception as error:  # its outcome was not recorded
            flight.fail(error)
        else:
            self._held[token] -= 1
            if self._held[token] == 0:
                del self._held[token]
        finally:
            flight.busy[delivery.department_id] -= 1
            self._wake.set()

    async def _release(self, tokens: list[str]) -> None:
        async with write_connection(self._engine) as conn:
            await repository.release_leases(conn, tokens=tokens)

    async def _attempt(self, delivery: DueDelivery) -> None:
        cancelled = entitlement(delivery, skew=timedelta(seconds=self._settings.clock_skew))
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
        published_at = rfc3339_ms(delivery.published_at)  # the token's claim and the body's
        token = mint_event_token(
            key=self._keys.signing,
            issuer=self._settings.issuer,
            subscriber=delivery.department_id,
            owner=delivery.owner_id,
            event_id=delivery.event_id,
            item=delivery.item_id,
            kind=delivery.kind,
            subject=subject,
            published_at=published_at,
            now=now,
            lifetime=self._settings.request_token_lifetime,
        )
        body = {
            "event_id": delivery.event_id,
            "item": delivery.item_id,
            "kind": delivery.kind,
            "subject": subject,
            "owner": delivery.owner_id,
            "published_at": published_at,
        }
        try:
            status = await post_for_status(
                self._http,
                url,
                seconds=self._settings.owner_timeout,
                json=body,
                headers={"Authorization": f"Bearer {token}", "X-Request-Id": delivery.id},
            )
        except (httpx.HTTPError, httpx.InvalidURL) as error:  # InvalidURL is no HTTPError
            return f"{type(error).__name__}"
        # Only the status counts: a 2xx whose body is longer than post_for_status reads
        # is an acknowledgement all the same (docs/events.md, "Delivery").
        return None if 200 <= status < 300 else f"HTTP {status}"


class _Flight:
    """A round's attempts under way: how many per subscriber, how many were claimed, the
    lease tokens of its claims, and its first failure."""

    def __init__(self) -> None:
        self.busy: Counter[str] = Counter()  # attempts under way per subscriber department
        self.attempted = 0
        self.tokens: set[str] = set()
        self.failure: Exception | None = None

    def under_way(self) -> int:
        return sum(self.busy.values())

    def fail(self, error: Exception) -> None:
        self.failure = self.failure or error


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
