"""A round whose claim fails lets the attempts under way finish (decision 0088, its
follow-up). The claim's first step, a look for due deliveries without a lock, used to
sit outside the claim's error handling: when it failed (a database blip) while an
attempt was under way, the failure left the round's task group, which cut the attempt
off mid-call; its lease stayed held until ``event_lease`` ran out, and the subscriber,
which had the event, was sent it again. Real hub and subscriber on loopback, SQLite
and PostgreSQL, on the worlds of test_events.py; the look is made to fail once."""

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from onceonly.adapters import DeliveredEvent
from onceonly.hub.events import repository

from tests.hub.events.test_events import (  # its worlds are in conftest.py
    FAST_RETRIES,
    WorldMaker,
    _point,
    consumer_adapter,
    delivery_entries,
)
from tests.hub_testing import wait_until

ANSWER_AFTER = 1.0  # seconds the subscriber takes to acknowledge
LEASE = 7.0  # a cut-off attempt's lease would hold the delivery this long


class FailingLook:
    """``repository.any_due`` that fails once when armed, as a lost connection does."""

    def __init__(self) -> None:
        self.armed = threading.Event()
        self.failed = threading.Event()
        self._real = repository.any_due

    async def __call__(self, conn: AsyncConnection, **kwargs: Any) -> bool:
        if self.armed.is_set() and not self.failed.is_set():
            self.failed.set()
            raise OperationalError("SELECT", {}, Exception("connection lost"))
        return await self._real(conn, **kwargs)


def _delivery(db: sa.Engine) -> tuple[str, str | None]:
    with db.connect() as conn:
        query = "SELECT status, lease_token FROM event_deliveries"
        status, lease_token = conn.execute(sa.text(query)).one()
    return status, lease_token


def test_a_failed_look_lets_the_attempt_under_way_settle(
    database_url: str,
    tmp_path: Path,
    event_world: WorldMaker,
    db: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    look = FailingLook()
    monkeypatch.setattr(repository, "any_due", look)

    def slow_acknowledgement(event: DeliveredEvent) -> None:
        look.armed.set()  # the round's next look, while this call is under way, fails
        time.sleep(ANSWER_AFTER)

    settings = {**FAST_RETRIES, "owner_timeout": 3.0, "event_lease": LEASE}
    with (
        event_world(database_url, tmp_path, **settings) as world,
        consumer_adapter(world, tmp_path, on_event=slow_acknowledgement) as url,
    ):
        _point(world, url)
        world.subscribe()
        world.publish()
        wait_until(look.failed.is_set, what="the failed look")
        # Before: the attempt was cut off, the delivery stayed pending and leased until
        # event_lease, then was sent again (a second ok entry, no outcome for the first).
        wait_until(
            lambda: _delivery(db)[0] == "delivered", within=LEASE / 2, what="the delivery settled"
        )
        assert _delivery(db) == ("delivered", None)
        time.sleep(ANSWER_AFTER)  # a second send, if any, would have its entry by now
        outcomes = [(entry["outcome"], entry.get("reason")) for entry in delivery_entries(db)]
        assert outcomes == [("ok", None)]
        assert len(world.received) == 1
