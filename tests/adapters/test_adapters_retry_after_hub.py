"""A real hub whose PostgreSQL goes away answers ``503 database-unavailable`` with
``Retry-After: 5`` (decision 0049); the consumer SDK waits that long and fetches the
record once the database is back, or, when it may not wait that long, raises at once
with the value for its caller (decision 0053).

The hub reaches PostgreSQL through the loopback proxy of tests/hub/pg_proxy.py, which
resets every connection and refuses new ones while the server is "away"."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from onceonly.adapters import HubClient, UpstreamError
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
from tests.hub.pg_proxy import ProxyThread, proxy_in_thread
from tests.hub_testing import module_database


@pytest.fixture(scope="module", params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def away_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[World, ProxyThread]]:
    database_url = module_database(request, tmp_path_factory, catalogued=True)
    url = make_url(database_url)
    with proxy_in_thread((url.host or "127.0.0.1", url.port or 5432)) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        with exchange_world(
            database_url=proxied, tmp_path=tmp_path_factory.mktemp("world"), catalogued=True
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
