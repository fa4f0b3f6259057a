from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from joserfc.jwk import ECKey

from onceonly.adapters import HubUnavailable, NotFound
from onceonly.adapters._hubkeys import JWKS_MAX_STALENESS, HubDirectory

from tests.adapters.adapter_testing import ITEM, HubDouble


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_refetches_the_jwks_for_a_kid_it_has_not_seen(hub: HubDouble) -> None:
    clock = Clock()
    rotated = ECKey.generate_key("P-256", auto_kid=True)

    async def scenario() -> tuple[bool, bool, bool]:
        async with httpx.AsyncClient() as http:
            directory = HubDirectory(hub.url, http=http, clock=clock)
            known = await directory.signing_key(str(hub.keys[0].kid)) is not None
            hub.keys.append(rotated)
            clock.now += 1  # too soon: an unknown kid does not trigger a refetch yet
            too_soon = await directory.signing_key(str(rotated.kid)) is not None
            clock.now += 10
            later = await directory.signing_key(str(rotated.kid)) is not None
            return known, too_soon, later

    assert asyncio.run(scenario()) == (True, False, True)


def test_caches_the_compiled_schema_per_item_and_version(hub: HubDouble) -> None:
    async def scenario() -> bool:
        async with httpx.AsyncClient() as http:
            directory = HubDirectory(hub.url, http=http)
            return await directory.validator(ITEM, 1) is await directory.validator(ITEM, 1)

    assert asyncio.run(scenario())


def test_reports_an_unknown_item_and_an_unreachable_hub(hub: HubDouble) -> None:
    async def schema(url: str, item: str) -> None:
        async with httpx.AsyncClient() as http:
            await HubDirectory(url, http=http).schema(item, 1)

    with pytest.raises(NotFound):
        asyncio.run(schema(hub.url, "no.such-item"))
    with pytest.raises(HubUnavailable):
        asyncio.run(schema("http://127.0.0.1:9", ITEM))


def test_refetches_the_jwks_when_it_is_a_minute_old_and_keeps_it_if_the_hub_is_down(
    hub: HubDouble,
) -> None:
    clock = Clock()
    published_ahead = ECKey.generate_key("P-256", auto_kid=True)

    async def scenario() -> tuple[bool, bool]:
        async with httpx.AsyncClient() as http:
            directory = HubDirectory(hub.url, http=http, clock=clock)
            await directory.signing_key(str(hub.keys[0].kid))
            hub.keys.append(published_ahead)  # a rotation publishes the next key early
            clock.now += 61
            await directory.signing_key(str(hub.keys[0].kid))  # refreshed on the way
            clock.now += 1  # unknown-kid refetches are rate-limited; it is known already
            known_in_time = await directory.signing_key(str(published_ahead.kid)) is not None
            down = HubDirectory("http://127.0.0.1:9", http=http, clock=clock)
            down._keys, down._keys_fetched_at = directory._keys, clock.now - 120
            down._keys_confirmed_at = clock.now - 120  # read two minutes ago
            still_served = await down.signing_key(str(hub.keys[0].kid)) is not None
            return known_in_time, still_served

    assert asyncio.run(scenario()) == (True, True)


def test_keys_the_hub_cannot_confirm_serve_24_hours_no_longer(
    hub: HubDouble, caplog: pytest.LogCaptureFixture
) -> None:
    """A key the hub withdrew must stop holding while its JWKS cannot be fetched: the
    adapter kept the last keys it read with no time limit (decision 0061)."""
    clock = Clock()
    kid = str(hub.keys[0].kid)

    async def scenario() -> tuple[bool, str | None]:
        async with httpx.AsyncClient() as http:
            directory = HubDirectory(hub.url, http=http, clock=clock)
            await directory.signing_key(kid)
            assert await directory.unreachable() is None
            directory._hub_url = "http://127.0.0.1:9"  # the hub goes away
            clock.now += JWKS_MAX_STALENESS - 60
            served = await directory.signing_key(kid) is not None
            clock.now += 120
            with pytest.raises(HubUnavailable, match="more than 24 h"):
                await directory.signing_key(kid)
            return served, await directory.unreachable()

    with caplog.at_level(logging.WARNING, logger="adapters.hubkeys"):
        served, why = asyncio.run(scenario())

    assert served
    assert why is not None
    assert why == "the hub's keys were last read 24 h ago"
    assert any("could not be refetched" in r.getMessage() for r in caplog.records)
