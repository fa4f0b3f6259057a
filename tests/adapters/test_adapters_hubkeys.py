from __future__ import annotations

import asyncio
import gzip
import json
import logging
import time
import tracemalloc
from collections.abc import AsyncIterator

import httpx
import pytest
from joserfc.jwk import ECKey, KeySet

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


def trickling_hub(hub: HubDouble, *, jwks: bytes | None = None) -> httpx.MockTransport:
    """The hub's JWKS answered one byte every 0.1 s for 20 s (a hub or proxy that
    trickles), or ``jwks`` at once; its metadata at once."""

    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(200):
            yield b" "
            await asyncio.sleep(0.1)
        yield json.dumps({"keys": [k.as_dict(private=False) for k in hub.keys]}).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/jwks.json"):
            return httpx.Response(200, content=trickle() if jwks is None else jwks)
        return httpx.Response(200, json={"issuer": hub.url})

    return httpx.MockTransport(handler)


def test_a_trickled_jwks_is_given_up_at_the_deadline_for_the_whole_answer(
    hub: HubDouble,
) -> None:
    """httpx's timeout bounds each read only: every query waited on the keys' lock as
    long as the hub trickled (review 161: 20 s)."""
    clock = Clock()
    kid = str(hub.keys[0].kid)

    async def scenario() -> tuple[float, float, bool]:
        async with httpx.AsyncClient(transport=trickling_hub(hub), timeout=5.0) as http:
            directory = HubDirectory(hub.url, http=http, clock=clock, deadline=0.5)
            started = time.monotonic()
            with pytest.raises(HubUnavailable, match=r"whole within 0\.5 s"):
                await directory.signing_key(kid)
            first = time.monotonic() - started
            directory._keys, directory._keys_confirmed_at = KeySet(list(hub.keys)), clock.now
            clock.now += 61  # a minute old: refetched, trickled, kept
            started = time.monotonic()
            known = await directory.signing_key(kid) is not None
            return first, time.monotonic() - started, known

    first, refetch, known = asyncio.run(scenario())

    assert first < 2
    assert refetch < 2
    assert known


def test_a_jwks_over_64_kib_is_not_read(hub: HubDouble) -> None:
    padded = {"keys": [k.as_dict(private=False) for k in hub.keys], "pad": "x" * 70_000}
    transport = trickling_hub(hub, jwks=json.dumps(padded).encode())

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=transport) as http:
            await HubDirectory(hub.url, http=http).signing_key(str(hub.keys[0].kid))

    with pytest.raises(HubUnavailable, match="larger than 65536 bytes"):
        asyncio.run(scenario())


def test_a_compressed_jwks_is_refused_unread_with_memory_bounded(hub: HubDouble) -> None:
    """httpx decoded each network chunk through every coding before the 64 KiB cap was
    checked: ``gzip, gzip`` swelled some 600 bytes to 64 MiB in one call (review 167).
    The adapter asks for ``Accept-Encoding: identity`` and refuses any other coding."""
    bomb = gzip.compress(gzip.compress(b" " * 64 * 2**20, 9), 9)
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("Accept-Encoding", ""))
        headers = {"Content-Encoding": "gzip, gzip", "Content-Type": "application/json"}
        return httpx.Response(200, headers=headers, stream=httpx.ByteStream(bomb))

    async def scenario() -> tuple[int, str]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            directory = HubDirectory(hub.url, http=http)
            tracemalloc.start()
            try:
                with pytest.raises(HubUnavailable) as caught:
                    await directory.signing_key(str(hub.keys[0].kid))
                return tracemalloc.get_traced_memory()[1], str(caught.value)
            finally:
                tracemalloc.stop()

    peak, refusal = asyncio.run(scenario())

    assert peak < 4 * 2**20, f"a 64 KiB cap allocated {peak / 2**20:.0f} MiB"
    assert "Content-Encoding" in refusal
    assert asked == ["identity"]
