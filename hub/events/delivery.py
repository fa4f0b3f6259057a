"""Delivering change events: at least once, signed, with backoff and dead letters.

Each hub process runs one :class:`Deliverer`. It leases due deliveries (on
PostgreSQL with ``FOR UPDATE SKIP LOCKED``, so replicas take disjoint batches;
a lease that expires because its process died is taken over), posts each event
to the subscriber's adapter, and records the outcome under its lease. A
delivery that keeps failing becomes a dead letter that operators can inspect
and replay. Receivers de-duplicate by event id, since "at least once" means a
retry after a lost acknowledgement delivers twice.
"""

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.audit import leaves
from hub.audit.service import AuditLog
from hub.config import Settings
from hub.db import write_connection
from hub.events import repository
from hub.events.repository import DueDelivery
from hub.events.tokens import mint_event_token
from hub.keys import HubKeys
from hub.kit.clock import rfc3339_ms, utcnow

log = logging.getLogger("onceonly.events")
STOP_MARGIN = 5.0  # seconds a stopping round may take beyond its attempts' timeout


@dataclass(frozen=True)
class Outcome:
    """What became of one attempt: the new row values and the audit entry's outcome."""

    values: dict[str, Any]
    audit_outcome: str | None
    reason: str | None = None


def backoff(attempts: int, *, base: float, cap: float, jitter: Callable[[], float]) -> float:
    """Exponential backoff with jitter: ``base * 2^(attempts-1)``, at most ``cap``, times
    a random factor in [0.5, 1) so that many failed deliveries do not retry in step."""
    delay: float = min(cap, base * 2.0 ** max(attempts - 1, 0))
    return delay * (0.5 + jitter() / 2)


def judge(
    delivery: DueDelivery, *, error: str | None, now: datetime, settings: Settings
) -> Outcome:
    """The next state of a delivery after an attempt (``error`` None: it succeeded). Pure."""
    if error is None:
        return Outcome({"status": "delivered", "delivered_at": now, "last_error": None}, "ok")
    attempts = delivery.attempts + 1
    if attempts >= settings.event_max_attempts:
        values = {"status": "dead", "attempts": attempts, "last_error": error[:300]}
        return Outcome(values, "failed", "dead-letter")
    delay = backoff(
        attempts, base=settings.event_retry_base, cap=settings.event_retry_cap, jitter=random.random
    )
    values = {
        "attempts": attempts,
        "last_error": error[:300],
        "next_attempt_at": now + timedelta(seconds=delay),
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
    ) -> None:
        self._engine, self._http, self._keys = engine, http, keys
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
        now = utcnow()
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
            await asyncio.gather(*(self._attempt(delivery) for delivery in due))
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
        error = "no active grant" if not delivery.granted else await self._send(delivery)
        if not delivery.granted:
            outcome = Outcome({"status": "cancelled", "last_error": error}, "refused", "no-grant")
        else:
            outcome = judge(delivery, error=error, now=utcnow(), settings=self._settings)
        async with write_connection(self._engine) as conn:
            settled = await repository.settle(conn, delivery=delivery, values=outcome.values)
            if settled and outcome.values.get("status") in ("delivered", "cancelled"):
                await repository.forget_subject_when_done(conn, event_id=delivery.event_id)
        if settled and outcome.audit_outcome is not None:
            await self._audit.append(_entry(delivery, outcome))

    async def _send(self, delivery: DueDelivery) -> str | None:
        """POST the event to the subscriber's adapter; None on success, else why not."""
        if not delivery.adapter_url or delivery.subject is None:
            return "the subscriber has no adapter registered"
        now = int(time.time())
        token = mint_event_token(
            key=self._keys.signing,
            issuer=self._settings.issuer,
            subscriber=delivery.department_id,
            owner=delivery.owner_id,
            event_id=delivery.event_id,
            item=delivery.item_id,
            kind=delivery.kind,
            subject=delivery.subject,
            now=now,
            lifetime=self._settings.request_token_lifetime,
        )
        body = {
            "event_id": delivery.event_id,
            "item": delivery.item_id,
            "kind": delivery.kind,
            "subject": delivery.subject,
            "owner": delivery.owner_id,
            "published_at": rfc3339_ms(delivery.published_at),
        }
        url = f"{delivery.adapter_url.rstrip('/')}/v1/events"
        try:
            response = await self._http.post(
                url,
                json=body,
                headers={"Authorization": f"Bearer {token}", "X-Request-Id": delivery.id},
                timeout=self._settings.owner_timeout,
            )
        except httpx.HTTPError as error:
            return f"{type(error).__name__}"
        return None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"


def _entry(delivery: DueDelivery, outcome: Outcome) -> dict[str, Any]:
    return leaves.build_entry(
        time=utcnow(),
        action="event.deliver",
        outcome=outcome.audit_outcome or "ok",
        reason=outcome.reason,
        department=delivery.department_id,
        item=delivery.item_id,
        subject=delivery.subject_pseudonym,
        event=delivery.event_id,
        request_id=delivery.id,
    )
