"""The adapter's change publisher when the hub refuses its client or is away: one log
line per state of failure, naming the error's class, status and problem type (never a
subject or a token), exponential backoff with jitter, ``Retry-After`` honoured, and a
line when publishing resumes (decision 0062).

On the wire: the hub double of ``test_adapters_retry_after`` (its scripted refusals and
the arrival of every request)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from joserfc.jwk import ECKey
from sqlalchemy.exc import OperationalError

from onceonly.adapters import (
    AsyncHubClient,
    AuthenticationFailed,
    HubUnavailable,
    InvalidRequest,
    RateLimited,
    RecordStore,
    UpstreamError,
)
from onceonly.adapters._events import QUICK_CAP, ChangePublisher, backoff, wait_after

from tests.adapters import test_adapters_retry_after as on_the_wire
from tests.adapters.adapter_testing import CLIENT_ID, ITEM, RECORD, SUBJECT
from tests.adapters.test_adapters_retry_after import EVENTS, TOKEN, Answer, World

# its hub double, served for this module too, and a world on it for each test
served, world = on_the_wire.served, on_the_wire.world

EVENTS_LOGGER = "onceonly.adapter.events"


def run_publisher(
    client: Callable[[], AsyncHubClient],
    outbox: Path,
    *,
    until: Callable[[], bool],
    within: float,
    **options: float,
) -> RecordStore:
    """Run a change publisher with ``client()`` over an outbox of one change until
    ``until()`` holds (at most ``within`` seconds), with the full factor of its jitter;
    the outbox."""
    store = RecordStore(outbox)
    store.put(ITEM, SUBJECT, dict(RECORD))

    async def scenario() -> None:
        async with client() as hub_client:
            publisher = ChangePublisher(store, hub_client, jitter=lambda: 1.0, **options)
            async with anyio.create_task_group() as group:
                group.start_soon(publisher.run)
                with anyio.fail_after(within):
                    while not until():
                        await anyio.sleep(0.02)
                group.cancel_scope.cancel()

    asyncio.run(scenario())
    return store


def publishing_client(world: World) -> Callable[[], AsyncHubClient]:
    """The adapter's client as it publishes: no repeats of its own (``retries=0``)."""
    return lambda: world.async_client(retries=0)


def lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == EVENTS_LOGGER and record.levelno == level
    ]


@pytest.mark.parametrize(
    ("failures", "jitter", "seconds"),
    [
        (1, 1.0, 1.0),  # the first wait: the interval
        (2, 1.0, 2.0),
        (5, 1.0, 16.0),
        (9, 1.0, 256.0),
        (10, 1.0, 300.0),  # the cap
        (10, 0.0, 150.0),  # jitter takes up to half
        (5_000, 0.5, 225.0),  # days of failures: no overflow
    ],
)
def test_the_wait_doubles_with_jitter_up_to_its_cap(
    failures: int, jitter: float, seconds: float
) -> None:
    assert backoff(failures, base=1.0, cap=300.0, jitter=lambda: jitter) == seconds


def test_a_refused_client_is_logged_once_and_asked_ever_less_often(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The client's key was replaced at the hub: every attempt is a refused token request
    (a ``token.issue`` audit entry at a real hub). Before, one a round (every ``interval``)
    and not a line in the adapter's log."""
    world.hub.clients[CLIENT_ID] = ECKey.generate_key("P-256", auto_kid=True)
    started = time.monotonic()

    with caplog.at_level(logging.DEBUG, logger=EVENTS_LOGGER):
        store = run_publisher(
            publishing_client(world),
            tmp_path / "outbox.db",
            until=lambda: time.monotonic() - started > 2.0,
            within=5.0,
            interval=0.05,
            max_wait=0.4,
        )

    # 0.05, 0.1, 0.2, 0.4, 0.4, ...: about 8 in 2 s (40 at one a round)
    assert len(world.outage.at(TOKEN)) <= 9
    gaps = world.outage.gaps(TOKEN)
    assert gaps[2] >= 0.18
    assert max(gaps) < 0.8
    (refused,) = lines(caplog, logging.ERROR)
    assert refused.startswith(
        "publishing changes failed: AuthenticationFailed, status 401, problem type invalid-client"
    )
    assert "check its key at the hub" in refused
    assert "at least every 0.4 s" in refused
    assert lines(caplog, logging.WARNING) == []
    assert SUBJECT not in caplog.text
    assert "eyJ" not in caplog.text  # no token, no client assertion
    assert len(store.pending_changes()) == 1
    store.close()


def test_publishing_again_once_the_hub_takes_the_client_is_logged(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world.hub.clients[CLIENT_ID] = ECKey.generate_key("P-256", auto_kid=True)

    def registered_again_after_three_refusals() -> bool:
        if len(world.outage.at(TOKEN)) >= 3:
            world.hub.clients[CLIENT_ID] = world.key  # `onceonly client put` with its key
        return bool(lines(caplog, logging.INFO))  # once the round has settled

    with caplog.at_level(logging.INFO, logger=EVENTS_LOGGER):
        store = run_publisher(
            publishing_client(world),
            tmp_path / "outbox.db",
            until=registered_again_after_three_refusals,
            within=5.0,
            interval=0.05,
            max_wait=0.4,
        )

    assert store.pending_changes() == []
    store.close()
    assert len(lines(caplog, logging.ERROR)) == 1
    (resumed,) = lines(caplog, logging.INFO)
    refusals = len(world.outage.at(TOKEN)) - 1  # one a round; the last one was answered
    assert refusals >= 2
    assert resumed.startswith(f"publishing changes resumed after {refusals} failed attempts")


def test_a_hub_that_asks_to_come_back_is_logged_once_per_state_and_waited_for(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Three ``503``s, then two ``429``s, each with ``Retry-After: 1``: two lines, not
    five, and the waits the hub asked for."""
    world.outage.script[EVENTS] = [Answer(503, "1")] * 3 + [Answer(429, "1")] * 2

    with caplog.at_level(logging.INFO, logger=EVENTS_LOGGER):
        store = run_publisher(
            publishing_client(world),
            tmp_path / "outbox.db",
            until=lambda: bool(lines(caplog, logging.INFO)),
            within=15.0,
            interval=0.05,
        )

    assert store.pending_changes() == []
    store.close()
    assert all(1.0 <= gap < 2.0 for gap in world.outage.gaps(EVENTS))
    unavailable, limited = lines(caplog, logging.WARNING)
    assert unavailable == (
        "publishing changes failed: UpstreamError, status 503, problem type"
        " database-unavailable; the hub asked to come back in 1 s;"
        " publishing changes again in 1 s"
    )
    assert limited.startswith("publishing changes failed: RateLimited, status 429")
    assert lines(caplog, logging.INFO) == [
        "publishing changes resumed after 5 failed attempts"
        " (the last: RateLimited, status 429, problem type rate-limited)"
    ]


@pytest.mark.parametrize(
    ("failure", "seconds", "plan"),
    [
        # refused for good until an operator acts: up to max_wait
        (AuthenticationFailed("refused", problem_type="oauth-invalid-client"), 300.0, "300"),
        (RateLimited("slow down"), 300.0, "300"),  # a 429 that did not say when
        # the token endpoint refused the DPoP proof: the adapter's clock is off, say
        (
            InvalidRequest("proof", status=400, problem_type="oauth-invalid-dpop-proof"),
            300.0,
            "300",
        ),
        # away or failing: tried again at least every QUICK_CAP seconds
        (HubUnavailable("the hub could not be reached"), 30.0, "30"),
        (UpstreamError("failed", status=503), 30.0, "30"),
        (OperationalError("SELECT", {}, Exception("disk I/O error")), 30.0, "30"),
    ],
)
def test_a_refusal_that_lasts_waits_longer_than_a_hub_that_is_away(
    failure: Exception, seconds: float, plan: str
) -> None:
    wait, said = wait_after(failure, failures=50, interval=1.0, max_wait=300.0, jitter=lambda: 1.0)
    assert (wait, QUICK_CAP) == (seconds, 30.0)
    assert said.endswith(f"then less often, at least every {plan} s, until it works")


@pytest.mark.parametrize(("asked", "seconds"), [(0.0, 1.0), (5.0, 5.0), (3600.0, 300.0)])
def test_the_hub_is_asked_again_when_it_said(asked: float, seconds: float) -> None:
    failure = UpstreamError("away", status=503, retry_after=asked)
    wait, said = wait_after(failure, failures=9, interval=1.0, max_wait=300.0, jitter=lambda: 0.0)
    assert wait == seconds
    assert said.endswith(f"publishing changes again in {seconds:.0f} s")
