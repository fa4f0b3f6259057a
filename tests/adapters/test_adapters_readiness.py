"""``/readyz`` needs no token, so one readiness check answers it for 5 s and concurrent
calls share it (decision 0061): 300 calls made 234 requests to a legacy system, with the
adapter's credentials, and readiness flapped as the system slowed under them."""

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from onceonly.adapters import RecordStore, StoreSource, create_provider_app, load_config

from tests.adapters.adapter_testing import ITEM, HubDouble, serve, write_config


class CountedProbes:
    """A store source whose probe takes a while, counting the probes."""

    def __init__(self, store: RecordStore) -> None:
        self.inner, self.probes = StoreSource(store), 0

    async def fetch(self, item: str, subject: str) -> dict[str, Any] | None:
        return await self.inner.fetch(item, subject)

    async def probe(self, item: str) -> str:
        self.probes += 1
        await asyncio.sleep(0.3)
        return await self.inner.probe(item)


@pytest.fixture
def adapter(tmp_path: Path, hub: HubDouble, request: pytest.FixtureRequest) -> Iterator[Any]:
    config = load_config(write_config(tmp_path, hub_url=hub.url))
    with RecordStore(config.store_path) as store:
        source = CountedProbes(store)
        app = create_provider_app(config, sources={ITEM: source}, **request.param)
        with serve(app) as url:
            yield url, source


async def readyz_at_once(url: str, calls: int) -> list[int]:
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=calls)) as http:
        answers = await asyncio.gather(*(http.get(f"{url}/readyz") for _ in range(calls)))
    return [answer.status_code for answer in answers]


@pytest.mark.parametrize("adapter", [{}], indirect=True)
def test_concurrent_and_repeated_calls_share_one_check(adapter: Any) -> None:
    url, source = adapter

    assert asyncio.run(readyz_at_once(url, 50)) == [200] * 50
    assert [httpx.get(f"{url}/readyz").status_code for _ in range(20)] == [200] * 20

    assert source.probes == 1


@pytest.mark.parametrize("adapter", [{"readiness_kept": 0.5}], indirect=True)
def test_a_check_is_made_again_once_its_result_is_old(adapter: Any) -> None:
    url, source = adapter
    assert httpx.get(f"{url}/readyz").status_code == 200
    time.sleep(0.6)
    assert httpx.get(f"{url}/readyz").status_code == 200
    assert source.probes == 2
