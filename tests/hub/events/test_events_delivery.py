"""The deliverer's pure decisions, as tables: retry delays, what becomes of a delivery
(and which audit entry is committed with it) after an attempt, and which deliveries
are cancelled unsent because the subscriber could no longer query the record."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from onceonly.hub.config import Settings
from onceonly.hub.events.delivery import (
    Outcome,
    backoff,
    entitlement,
    judge,
    postpone,
    share_slots,
    subscriber_slots,
)
from onceonly.hub.events.repository import DueDelivery

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
SETTINGS = Settings(event_max_attempts=3, event_retry_base=1.0, event_retry_cap=10.0)
SKEW = timedelta(seconds=10)  # the hub's clock_skew


def due(attempts: int, **facts: Any) -> DueDelivery:
    """A delivery after ``attempts`` attempts, of an active, conditional item whose
    subscriber holds its grant, unless ``facts`` say otherwise."""
    return DueDelivery(
        id="d1",
        lease_token="t1",
        attempts=attempts,
        event_id="e1",
        item_id="person.residential-address",
        owner_id="civil-registry",
        kind="changed",
        subject="38001085718",
        subject_pseudonym="p1",
        published_at=NOW,
        department_id="social-welfare",
        adapter_url="http://127.0.0.1:9",
        **{
            "lifecycle": "active",
            "sharing_class": "conditional",
            "granted": True,
            "subscribed_at": NOW - timedelta(days=1),
            **facts,
        },
    )


@pytest.mark.parametrize(
    ("attempts", "jitter", "seconds"),
    [
        (0, 0.0, 0.5),  # before any failure: as after the first
        (1, 0.0, 0.5),  # base, halved by the smallest jitter factor
        (1, 0.5, 0.75),
        (2, 0.0, 1.0),
        (4, 0.5, 6.0),  # base * 2^3, times 0.75
        (5, 0.0, 5.0),  # 16 capped at 10, halved
        (30, 0.999, 9.995),  # far past the cap: the cap, times almost 1
    ],
)
def test_backoff_doubles_up_to_the_cap_with_jitter(
    attempts: int, jitter: float, seconds: float
) -> None:
    delay = backoff(attempts, base=1.0, cap=10.0, jitter=lambda: jitter)
    assert delay == pytest.approx(seconds)


DELIVERED = {"status": "delivered", "delivered_at": NOW, "last_error": None}


@pytest.mark.parametrize(
    ("attempts", "error", "expected"),
    [
        (0, None, Outcome(DELIVERED, None)),  # the ok entry, committed before the call, stands
        (2, None, Outcome(DELIVERED, None)),
        (
            0,
            "HTTP 503",
            Outcome(
                {
                    "attempts": 1,
                    "last_error": "HTTP 503",
                    "next_attempt_at": NOW + timedelta(seconds=0.5),
                },
                "failed",
                "delivery-failed",
            ),
        ),
        (
            1,
            "ConnectError",
            Outcome(
                {
                    "attempts": 2,
                    "last_error": "ConnectError",
                    "next_attempt_at": NOW + timedelta(seconds=1.0),
                },
                "failed",
                "delivery-failed",
            ),
        ),
        (
            2,
            "x" * 400,
            Outcome(
                {"status": "dead", "attempts": 3, "last_error": "x" * 300}, "failed", "dead-letter"
            ),
        ),
    ],
)
def test_judge_settles_an_attempt_with_its_audit_entry(
    attempts: int, error: str | None, expected: Outcome
) -> None:
    outcome = judge(due(attempts), error=error, now=NOW, settings=SETTINGS, jitter=lambda: 0.0)
    assert outcome == expected


def test_a_delivery_waiting_for_the_audit_log_is_not_counted_and_comes_back_soon() -> None:
    outcome = postpone(now=NOW, settings=SETTINGS)
    assert outcome.values == {
        "last_error": "audit log unavailable",
        "next_attempt_at": NOW + timedelta(seconds=SETTINGS.event_retry_base),
    }
    assert (outcome.audit_outcome, outcome.reason) == (None, None)


def cancelled(reason: str, last_error: str) -> Outcome:
    return Outcome({"status": "cancelled", "last_error": last_error}, "refused", reason)


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({}, None),  # sent
        ({"lifecycle": "deprecated"}, None),  # still served, as by the exchange
        ({"sharing_class": "unconditional"}, None),
        ({"granted": False}, cancelled("no-grant", "No active grant")),
        ({"sharing_class": "none"}, cancelled("item-not-shared", "Data item is not shared")),
        (  # closed to 'none': refused whatever grants exist, as a record query is
            {"sharing_class": "none", "granted": True},
            cancelled("item-not-shared", "Data item is not shared"),
        ),
        ({"lifecycle": "retired"}, cancelled("item-retired", "Data item retired")),
        (  # the exchange's order: a retired item is retired first
            {"lifecycle": "retired", "sharing_class": "none", "granted": False},
            cancelled("item-retired", "Data item retired"),
        ),
        # the department unsubscribed since the event
        ({"subscribed_at": None}, cancelled("not-subscribed", "Not subscribed")),
        (  # the record query's refusals first
            {"subscribed_at": None, "granted": False},
            cancelled("no-grant", "No active grant"),
        ),
        # subscribed when the event was published, by the clocks of the hub processes
        # that took each (up to SKEW apart): told
        ({"subscribed_at": NOW}, None),
        ({"subscribed_at": NOW + SKEW}, None),
        # subscribed (again) later than that: not told of an event from before
        (
            {"subscribed_at": NOW + SKEW + timedelta(milliseconds=1)},
            cancelled("not-subscribed", "Not subscribed"),
        ),
    ],
)
def test_a_delivery_is_sent_only_while_the_record_could_be_queried(
    facts: dict[str, Any], expected: Outcome | None
) -> None:
    assert entitlement(due(1, **facts), skew=SKEW) == expected


@pytest.mark.parametrize(("batch", "share"), [(4, 1), (7, 1), (8, 2), (50, 12), (1000, 250)])
def test_a_subscriber_has_a_quarter_of_the_attempts_at_most(batch: int, share: int) -> None:
    assert subscriber_slots(batch) == share


@pytest.mark.parametrize("batch", [1, 3])
def test_a_batch_too_small_to_share_is_refused_at_start(batch: int) -> None:
    """Below 4, a subscriber's share (one attempt) is a third of the deliverer or more:
    one subscriber that does not answer would hold up all the others (a hostile review)."""
    with pytest.raises(ValidationError, match="event_batch_size"):
        Settings(event_batch_size=batch)
    assert Settings(event_batch_size=4).event_batch_size == 4


DUE = [("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b"), ("a4", "a"), ("c1", "c")]


@pytest.mark.parametrize(
    ("free", "busy", "chosen"),
    [
        (8, {}, ["a1", "a2", "b1", "c1"]),  # a's third waits: it has its two
        (8, {"a": 1}, ["a1", "b1", "c1"]),  # one of a's under way already
        (8, {"a": 2}, ["b1", "c1"]),  # a hung subscriber holds its share, no more
        (2, {}, ["a1", "a2"]),  # the longest due first, within the free slots
        (0, {}, []),
        (8, {"b": 2, "c": 2}, ["a1", "a2"]),
    ],
)
def test_due_deliveries_share_the_free_slots_between_subscribers(
    free: int, busy: dict[str, int], chosen: list[str]
) -> None:
    assert share_slots(DUE, free=free, busy=busy, per_subscriber=2) == chosen
