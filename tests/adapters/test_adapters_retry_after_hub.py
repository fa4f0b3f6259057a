"""A real hub whose PostgreSQL goes away answers ``503 database-unavailable`` with
``Retry-After: 5`` (decision 0049); the consumer SDK waits that long and fetches the
record once the database is back, or, when it may not wait that long, raises at once
with the value for its caller (decision 0053). A real hub whose token endpoint limits
a client (decision 0051) answers ``429 slow_down`` with ``Retry-After``, which the SDK
waits out too, through the hub's DPoP nonce challenges; and a client's concurrent calls
ask it one token between them.

The hub reaches PostgreSQL through the loopback proxy of tests/hub/pg_proxy.py, which
resets every connection and refuses new ones while the server is "away"."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from onceonly.adapters import AsyncHubClient, HubClient, RateLimited, RecordResult, UpstreamError
from onceonly.hub.errors import DATABASE_RETRY_AFTER

from tests.hub.exchange_world import (
    ADDRESS,
    ADDRESS_RECORD,
    CONSUMER_CLIENT,
    PURPOSE,
    SUBJECT,
    World,
    exchange_world,
)
from tests.hub.pg_proxy import ProxyThread, proxy_in_thread, through, upstream_of
from tests.hub_testing import added_audit_entries, module_database


@pytest.fixture(scope="module", params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def away_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[World, ProxyThread]]:
    database_url = module_database(request, tmp_path_factory, catalogued=True)
    with proxy_in_thread(upstream_of(database_url)) as proxy:
        with exchange_world(
            database_url=through(proxy.port, database_url),
            tmp_path=tmp_path_factory.mktemp("world"),
            catalogued=True,
        ) as world:
            yield world, proxy


def _client(world: World, **options: float) -> HubClient:
    return HubClient(world.hub.url, client_id=CONSUMER_CLIENT, key=world.consumer_key, **options)


def test_a_fetch_waits_out_a_database_outage_as_the_hub_asks(
    away_world: tuple[World, ProxyThread],
) -> None:
    world, proxy = away_world
    proxy.away()
    back = threading.Timer(1.0, proxy.back)  # well before the hub's Retry-After is up
    back.start()
    started = time.monotonic()
    try:
        with _client(world) as hub_client:
            result = hub_client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
    finally:
        back.join()
    waited = time.monotonic() - started

    assert result.record == ADDRESS_RECORD
    assert DATABASE_RETRY_AFTER <= waited < DATABASE_RETRY_AFTER + 10


def test_a_client_that_may_not_wait_so_long_is_told_how_long_to_wait(
    away_world: tuple[World, ProxyThread],
) -> None:
    world, proxy = away_world
    proxy.away()
    started = time.monotonic()
    try:
        with (
            _client(world, max_retry_wait=2.0) as hub_client,
            pytest.raises(UpstreamError) as caught,
        ):
            hub_client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
    finally:
        proxy.back()

    assert time.monotonic() - started < DATABASE_RETRY_AFTER
    error = caught.value
    assert (error.status, error.problem_type) == (503, "database-unavailable")
    assert error.retry_after == DATABASE_RETRY_AFTER


@pytest.fixture(scope="module", params=["sqlite"])
def limited_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """A hub that issues a client a token every 2 s, after a burst of one, and asks for
    its DPoP nonce in every proof."""
    with exchange_world(
        database_url=module_database(request, tmp_path_factory, catalogued=True),
        tmp_path=tmp_path_factory.mktemp("world"),
        catalogued=True,
        token_client_burst=1,
        token_client_per_minute=30,
        dpop_nonce=True,
    ) as world:
        yield world


def _throttled(world: World) -> float:
    """Token requests the hub refused 429 for a client's budget (the process's count)."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in world.hub.metrics().text.splitlines()
        if line.startswith('onceonly_oauth_token_throttled_total{budget="client"')
    )


def test_a_token_refused_429_is_asked_again_after_retry_after(limited_world: World) -> None:
    with _client(limited_world) as first:
        first.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)  # spends the client's burst
    throttled = _throttled(limited_world)
    started = time.monotonic()
    with _client(limited_world) as second:  # a second process of the department, say
        result = second.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)

    assert result.record == ADDRESS_RECORD
    assert _throttled(limited_world) == throttled + 1  # refused once, then waited out
    assert time.monotonic() - started >= 1.0  # Retry-After: whole seconds, at least 1


def test_a_token_refused_429_reaches_a_caller_that_switched_repeats_off(
    limited_world: World,
) -> None:
    with _client(limited_world) as first:
        first.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
    with _client(limited_world, retries=0) as second, pytest.raises(RateLimited) as caught:
        second.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)

    error = caught.value
    assert (error.status, error.problem_type) == (429, "oauth-slow-down")
    assert error.retry_after in (1.0, 2.0)  # the bucket's refill, in whole seconds


def test_concurrent_calls_of_a_new_client_ask_one_token_within_its_budget(
    limited_world: World,
) -> None:
    """A client's calls that find no token renew it one at a time (decision 0053's Later
    note): the hub issues one token for all of them (its nonce challenges are audited
    refusals), and the client's budget of one token per 2 s, which they would spend
    asking one each, refuses them once at most."""
    world = limited_world
    throttled = _throttled(world)

    async def scenario() -> list[RecordResult | BaseException]:
        key = world.consumer_key
        async with AsyncHubClient(world.hub.url, client_id=CONSUMER_CLIENT, key=key) as client:
            fetches = [client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE) for _ in range(20)]
            return await asyncio.gather(*fetches, return_exceptions=True)

    with added_audit_entries(world.hub, action="token.issue") as issued:
        results = asyncio.run(scenario())

    records = [getattr(result, "record", result) for result in results]
    assert records == [ADDRESS_RECORD] * 20
    assert [entry["outcome"] for entry in issued].count("ok") == 1
    # refused at most once, when the module's other tests spent the burst: one call waits
    assert _throttled(world) <= throttled + 1
