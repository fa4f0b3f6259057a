"""The hub's Prometheus series (docs/operations.md, "Metrics"), scraped over HTTP from
real hubs on SQLite and PostgreSQL after known sequences of exchanges and decisions.

Counters and histograms live in the test process (several hubs of one process share
them), so each test compares a scrape after its sequence with one before it.
"""

import asyncio
import random
import string
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from onceonly.adapters import AccessDenied, UpstreamError
from onceonly.hub import metrics
from onceonly.hub.kit.clock import ManualClock
from onceonly.hub.kit.group_commit import GroupCommit
from onceonly.hub.kit.problems import Unavailable

from tests.hub.access_world import AccessWorld, Person, access_world, sign_in
from tests.hub.events.test_events import (
    FAST_RETRIES,
    WorldMaker,
    consumer_adapter,
    copies,  # noqa: F401 (a fixture event_world takes)
    event_world,  # noqa: F401 (a fixture)
)
from tests.hub.events.test_events import _point as point_subscriber
from tests.hub.exchange.test_exchange import query, token_for
from tests.hub.exchange_world import (
    ADDRESS,
    CONSUMER,
    OWNER,
    PURPOSE,
    SUBJECT,
    World,
    module_exchange_world,
)
from tests.hub_testing import DATABASES, RunningHub, problem_type, wait_until

Series = tuple[str, frozenset[tuple[str, str]]]
DELIVERIES = "onceonly_event_deliveries_total"


def scrape(hub: RunningHub) -> dict[Series, float]:
    """Every sample of ``/metrics``, by name and labels."""
    response = hub.metrics()
    assert response.status_code == 200
    samples: dict[Series, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[Series, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def grown(
    before: dict[Series, float], after: dict[Series, float], name: str, **labels: str
) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def typed_item_id() -> str:
    """An item id a client might type: well-formed, registered nowhere."""
    return "person." + "".join(random.choices(string.ascii_lowercase, k=12))


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with module_exchange_world(request, tmp_path_factory) as built:
        yield built


def _owner_down(world: World, adapter_url: str) -> None:
    with world.hub.admin() as admin:
        admin.put_department(OWNER, name="Civil Registry Office", adapter_url=adapter_url)


def test_counts_exchanges_refusals_and_times_by_registered_labels(world: World) -> None:
    before = scrape(world.hub)
    with world.client() as client:
        client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)  # ok
        with pytest.raises(AccessDenied):
            client.fetch(ADDRESS, SUBJECT, purpose="tax-assessment")  # no grant for it
        _owner_down(world, "http://127.0.0.1:9")
        try:
            with pytest.raises(UpstreamError):
                client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)  # the owner fails
        finally:
            _owner_down(world, world.owner_url)
    after = scrape(world.hub)

    exchange = {"item": ADDRESS, "consumer": CONSUMER, "owner": OWNER, "purpose": PURPOSE}
    assert grown(before, after, "onceonly_exchanges_total", **exchange, outcome="ok") == 1
    assert grown(before, after, "onceonly_exchanges_total", **exchange, outcome="failed") == 1
    no_grant = {**exchange, "purpose": "tax-assessment", "outcome": "refused"}
    assert grown(before, after, "onceonly_exchanges_total", **no_grant) == 1
    refusal = {"action": "record.query", "item": ADDRESS, "consumer": CONSUMER}
    assert grown(before, after, "onceonly_refusals_total", **refusal, reason="no-grant") == 1
    owner_down = {**refusal, "reason": "owner-unavailable"}
    assert grown(before, after, "onceonly_refusals_total", **owner_down) == 1
    # the owner was reached twice (answered, failed); the refusal never got that far
    owner_time = {"owner": OWNER, "item": ADDRESS}
    assert grown(before, after, "onceonly_owner_response_seconds_count", **owner_time) == 2
    assert grown(before, after, "onceonly_hub_added_seconds_count", item=ADDRESS) == 2
    assert grown(before, after, "onceonly_audit_entries_total") >= 3


def test_a_refusal_before_the_client_is_known_has_no_consumer(world: World) -> None:
    before = scrape(world.hub)
    response = query(world, ADDRESS, None)
    assert problem_type(response) == "invalid-token"
    after = scrape(world.hub)
    refusal = {"action": "record.query", "reason": "invalid-token", "item": "-", "consumer": "-"}
    assert grown(before, after, "onceonly_refusals_total", **refusal) == 1


def test_unregistered_item_ids_add_no_series(world: World) -> None:
    token = token_for(world)
    assert problem_type(query(world, typed_item_id(), token)) == "unknown-item"
    before = scrape(world.hub)
    typed = [typed_item_id() for _ in range(20)]
    for item in typed:
        assert problem_type(query(world, item, token)) == "unknown-item"
    text = world.hub.metrics().text
    after = scrape(world.hub)

    assert not [item for item in typed if item in text]
    moving = {"onceonly_checkpoint_age_seconds"}  # may first appear meanwhile
    assert {s for s in after if s[0] not in moving} == {s for s in before if s[0] not in moving}
    unknown = {
        "action": "record.query",
        "reason": "unknown-item",
        "item": "-",
        "consumer": CONSUMER,
    }
    assert grown(before, after, "onceonly_refusals_total", **unknown) == 20
    exchange = {"item": "-", "consumer": CONSUMER, "owner": "-", "purpose": PURPOSE}
    assert grown(before, after, "onceonly_exchanges_total", **exchange, outcome="refused") == 20


def test_audit_writer_and_log_are_read_at_scrape(world: World) -> None:
    with world.client() as client:
        receipt = client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE).receipt
    samples = scrape(world.hub)
    assert value(samples, "onceonly_audit_writer_up") == 1
    assert value(samples, "onceonly_audit_queue_entries") == 0
    assert value(samples, "onceonly_audit_commit_lag_seconds") == 0
    assert value(samples, "onceonly_audit_commit_failures_total") == 0
    assert value(samples, "onceonly_audit_tree_size") >= receipt.index + 1
    on_loop = value(samples, "onceonly_jti_loop_writes_total", result="done")
    handed = value(samples, "onceonly_jti_loop_writes_total", result="passed")
    assert on_loop + handed >= 1  # the query's spend went one way or the other
    for writer in ("audit", "jti"):  # the query's entry and its DPoP spend waited
        assert value(samples, "onceonly_commit_wait_seconds_count", writer=writer) >= 1
        assert value(samples, "onceonly_commit_wait_seconds_sum", writer=writer) > 0


# Access decisions, with a clock the test moves: a fresh hub per database.

MONDAY = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(MONDAY)


@pytest.fixture
def decisions(database_url: str, tmp_path: Path, clock: ManualClock) -> Iterator[AccessWorld]:
    with access_world(database_url=database_url, tmp_path=tmp_path, clock=clock) as built:
        yield built


def test_decision_times_and_pending_requests(decisions: AccessWorld, clock: ManualClock) -> None:
    before = scrape(decisions.world.hub)
    on_time = decisions.pending(purpose="benefit-eligibility")
    late = decisions.pending(purpose="housing-benefit")
    waiting = decisions.pending(purpose="child-benefit")
    owner = decisions.people["rita.registry"]
    due = datetime.fromisoformat(
        owner.call("GET", f"/v1/access-requests/{late}").json()["answer_due"]
    )

    clock.advance(1800)
    assert owner.act(on_time, "approve", {}).status_code == 200
    samples = scrape(decisions.world.hub)
    assert value(samples, "onceonly_access_requests_pending", owner=OWNER) == 2
    assert value(samples, "onceonly_access_requests_overdue", owner=OWNER) == 0
    assert value(samples, "onceonly_access_requests_pending", owner=CONSUMER) == 0

    clock.advance((due - clock.now()).total_seconds() + 86400)  # a day after the deadline
    owner = Person(decisions.url, sign_in(decisions.url, "rita.registry"))  # days later
    assert owner.act(late, "refuse", {"reason": "not needed"}).status_code == 200, late
    after = scrape(decisions.world.hub)

    assert value(after, "onceonly_access_requests_pending", owner=OWNER) == 1  # `waiting`
    assert value(after, "onceonly_access_requests_overdue", owner=OWNER) == 1
    approved = {"owner": OWNER, "decision": "approved"}
    refused = {"owner": OWNER, "decision": "refused"}
    assert grown(before, after, "onceonly_access_decision_seconds_count", **approved) == 1
    waited = grown(before, after, "onceonly_access_decision_seconds_sum", **approved)
    assert waited == pytest.approx(1800)  # a sum of floats
    assert grown(before, after, "onceonly_access_decision_seconds_count", **refused) == 1
    ratio = "onceonly_access_decision_deadline_ratio_bucket"
    assert grown(before, after, ratio, **approved, le="0.25") == 1  # half an hour of days
    assert grown(before, after, ratio, **refused, le="1.0") == 0  # late
    assert grown(before, after, ratio, **refused, le="+Inf") == 1
    assert waiting  # still pending: the one counted above


# The group commit's accounting, read by /metrics (no database: a commit the test holds).


def test_group_commit_reports_what_waits_and_for_how_long() -> None:
    async def scenario() -> tuple[int, float, int, float, int]:
        release = asyncio.Event()

        async def commit(batch: list[int]) -> list[int]:
            await release.wait()
            if 13 in batch:
                raise RuntimeError("the database went away")
            return batch

        writer: GroupCommit[int, int] = GroupCommit(
            commit, name="test", batch_size=8, failure=lambda: Unavailable("no")
        )
        await writer.start()
        submitted = [asyncio.ensure_future(writer.submit(n)) for n in range(3)]
        await asyncio.sleep(0.05)
        waiting, lag = writer.waiting, writer.lag
        release.set()
        await asyncio.gather(*submitted)
        with pytest.raises(Unavailable):
            await writer.submit(13)
        settled = (writer.waiting, writer.lag, writer.failed_batches)
        await writer.stop()
        return waiting, lag, *settled

    waiting, lag, after, lag_after, failed = asyncio.run(scenario())
    assert waiting == 3
    assert lag >= 0.04
    assert (after, lag_after, failed) == (0, 0.0, 1)


def test_counts_delivery_attempts_retries_and_dead_letters(
    database_url: str,
    tmp_path: Path,
    event_world: WorldMaker,  # noqa: F811 (the fixture imported above)
) -> None:
    settings = {**FAST_RETRIES, "event_max_attempts": 3}
    labels = {"item": ADDRESS, "subscriber": CONSUMER}
    with event_world(database_url, tmp_path, **settings) as world:
        before = scrape(world.hub)
        point_subscriber(world, "http://127.0.0.1:9")  # nothing listens there
        world.subscribe()
        world.publish()
        with world.hub.admin() as admin:
            wait_until(lambda: len(admin.dead_letters()) == 1)
            (dead,) = admin.dead_letters()
            with consumer_adapter(world, tmp_path) as url:
                point_subscriber(world, url)
                admin.replay_delivery(dead["id"])
                wait_until(lambda: len(world.received) == 1)
        delivered = {**labels, "outcome": "delivered"}  # counted once settled, just after
        wait_until(lambda: grown(before, scrape(world.hub), DELIVERIES, **delivered) == 1)
        after = scrape(world.hub)

    assert grown(before, after, DELIVERIES, **labels, outcome="failed") == 3
    assert grown(before, after, "onceonly_event_retries_total", **labels) == 2
    assert grown(before, after, "onceonly_event_dead_letters_total", **labels) == 1
    delivery = {"action": "event.deliver", "item": ADDRESS, "consumer": CONSUMER}
    assert grown(before, after, "onceonly_refusals_total", **delivery, reason="dead-letter") == 1


def test_a_series_counts_in_the_metrics_own_child() -> None:
    registry = CollectorRegistry()
    counter = Counter("test_series_total", "test", ["item", "outcome"], registry=registry)
    series = metrics.Series(counter)
    series.of("a", "ok").inc()
    series.of("a", "ok").inc()
    series.of("b", "refused").inc()
    assert series.of("a", "ok") is counter.labels(item="a", outcome="ok")
    assert registry.get_sample_value("test_series_total", {"item": "a", "outcome": "ok"}) == 2
    assert registry.get_sample_value("test_series_total", {"item": "b", "outcome": "refused"}) == 1
