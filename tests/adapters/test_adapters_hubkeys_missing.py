"""A hub whose own documents answer 404 (a proxy with no route to it, a wrong path in
``hub_url``) is unavailable: record queries get 503 ``hub-unavailable`` and ``/readyz``
503. The 404 was read as "the hub has no such item": queries got 404 ``unknown-item``
(record not found at the hub), and a fresh adapter's ``/readyz`` answered 500.
"""

import asyncio
import logging
from pathlib import Path

import httpx
import pytest
from joserfc.jwk import ECKey

from onceonly.adapters import HubUnavailable, RecordStore, create_provider_app, load_config
from onceonly.adapters._hubkeys import HubDirectory

from tests.adapters.adapter_testing import (
    CONSUMER,
    ITEM,
    PURPOSE,
    RECORD,
    SUBJECT,
    HubDouble,
    serve,
    write_config,
)
from tests.adapters.test_adapters_hubkeys import Clock

NO_ROUTE = "/no-route-here"  # the hub's app answers 404 under it
METADATA = "/.well-known/oauth-authorization-server"


def test_a_hub_with_no_documents_is_unavailable_not_an_unknown_item(hub: HubDouble) -> None:
    async def scenario() -> str | None:
        async with httpx.AsyncClient() as http:
            directory = HubDirectory(hub.url + NO_ROUTE, http=http)
            with pytest.raises(HubUnavailable, match="answered 404"):
                await directory.issuer()
            with pytest.raises(HubUnavailable, match="answered 404"):
                await directory.signing_key(str(hub.keys[0].kid))
            return await directory.unreachable()

    assert asyncio.run(scenario()) == f"the hub answered 404 to GET {METADATA}"


def test_keys_read_before_the_404_serve_and_a_new_kid_is_unavailable(
    hub: HubDouble, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    kid = str(hub.keys[0].kid)

    async def scenario() -> bool:
        async with httpx.AsyncClient() as http:
            directory = HubDirectory(hub.url, http=http, clock=clock)
            await directory.issuer()
            await directory.signing_key(kid)
            directory._hub_url = hub.url + NO_ROUTE  # a proxy loses its route to the hub
            clock.now += 61
            served = await directory.signing_key(kid) is not None
            new_kid = str(ECKey.generate_key("P-256", auto_kid=True).kid)
            clock.now += 3  # past the rate limit of unknown-kid refetches
            with pytest.raises(HubUnavailable, match="answered 404"):
                await directory.signing_key(new_kid)
            assert await directory.unreachable() is None  # the keys read a minute ago hold
            return served

    with caplog.at_level(logging.WARNING, logger="adapters.hubkeys"):
        assert asyncio.run(scenario())
    assert any("could not be refetched" in r.getMessage() for r in caplog.records)


def test_an_adapter_whose_hub_answers_404_is_not_ready_and_answers_503(
    tmp_path: Path, hub: HubDouble
) -> None:
    config = load_config(write_config(tmp_path, hub_url=hub.url + NO_ROUTE))
    with RecordStore(config.store_path) as store:
        store.put(ITEM, SUBJECT, dict(RECORD), announce=False)
    body = {"subject": SUBJECT, "purpose": PURPOSE, "consumer": CONSUMER, "version": 1}

    with serve(create_provider_app(config, readiness_kept=0)) as url:
        ready = httpx.get(f"{url}/readyz")
        answer = httpx.post(
            f"{url}/v1/items/{ITEM}/records/query",
            json=body,
            headers={"Authorization": f"Bearer {hub.request_token()}"},
        )

    assert ready.status_code == 503
    assert answer.status_code == 503
    assert answer.json()["type"].endswith(":hub-unavailable")
