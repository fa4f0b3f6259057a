"""The consumer SDK renews its token for one call at a time: calls that find no valid
token together send one token request, not one each (decision 0053's Later note). The
hub limits the tokens a client and an address may ask for (decision 0051), so a client
that asked once per concurrent call would meet its own ``429``s.

On the wire: the adapters suite's hub double on loopback, which counts token requests.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import anyio
import pytest
from joserfc.jwk import ECKey

from onceonly.adapters import (
    AsyncHubClient,
    AuthenticationFailed,
    HubClient,
    RecordResult,
)

from tests.adapters.adapter_testing import CLIENT_ID, ITEM, PURPOSE, RECORD, SUBJECT, HubDouble

CALLS = 40
T = TypeVar("T")


def _async_client(hub: HubDouble, key: ECKey) -> AsyncHubClient:
    return AsyncHubClient(hub.url, client_id=CLIENT_ID, key=key, timeout=30.0)


async def _fetch_together(
    hub_client: AsyncHubClient, calls: int = CALLS
) -> list[RecordResult | BaseException]:
    with anyio.fail_after(60):  # a call left waiting for the token lock fails the test
        fetches = [hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE) for _ in range(calls)]
        return await asyncio.gather(*fetches, return_exceptions=True)


def _records(results: list[RecordResult | BaseException]) -> list[object]:
    return [
        result.record if isinstance(result, RecordResult) else type(result).__name__
        for result in results
    ]


def _within(seconds: float, call: Callable[[], T]) -> T:
    """``call()``'s outcome, on a daemon thread so that a call that never ends fails the
    test (``TimeoutError``) instead of holding it."""
    outcome: Future[T] = Future()

    def run() -> None:
        try:
            outcome.set_result(call())
        except BaseException as error:
            outcome.set_exception(error)

    threading.Thread(target=run, daemon=True).start()
    return outcome.result(timeout=seconds)


def test_concurrent_calls_of_a_new_async_client_ask_one_token(
    hub: HubDouble, client_key: ECKey
) -> None:
    async def scenario() -> list[RecordResult | BaseException]:
        async with _async_client(hub, client_key) as hub_client:
            return await _fetch_together(hub_client)

    results = asyncio.run(scenario())

    assert _records(results) == [RECORD] * CALLS
    assert hub.token_requests == 1
    assert len(hub.queries) == CALLS


def test_concurrent_calls_after_the_token_was_revoked_ask_one_new_token(
    hub: HubDouble, client_key: ECKey
) -> None:
    """Each call's query is refused ``invalid-token``; the call that renews first gives
    the others its new token, which they do not drop for the old one's refusal."""

    async def scenario() -> list[RecordResult | BaseException]:
        async with _async_client(hub, client_key) as hub_client:
            await hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)
            hub.revoke_tokens()
            return await _fetch_together(hub_client)

    results = asyncio.run(scenario())

    assert _records(results) == [RECORD] * CALLS
    assert hub.token_requests == 2


def test_concurrent_threads_of_a_sync_client_ask_one_token(
    hub: HubDouble, client_key: ECKey
) -> None:
    with (
        HubClient(hub.url, client_id=CLIENT_ID, key=client_key, timeout=30.0) as hub_client,
        ThreadPoolExecutor(max_workers=16) as pool,
    ):
        fetches = [
            pool.submit(hub_client.fetch, ITEM, SUBJECT, purpose=PURPOSE) for _ in range(CALLS)
        ]
        records = [fetch.result(timeout=60).record for fetch in fetches]

    assert records == [RECORD] * CALLS
    assert hub.token_requests == 1


def test_calls_that_waited_for_a_renewal_refused_invalid_client_fail_with_its_error(
    hub: HubDouble,
) -> None:
    """No call is left waiting behind a renewal that failed, and none asks again: the hub
    refused the client, and would refuse each of them (decision 0057)."""
    stranger = ECKey.generate_key("P-256", auto_kid=True)  # not registered at the hub

    async def scenario() -> list[RecordResult | BaseException]:
        async with _async_client(hub, stranger) as hub_client:
            return await _fetch_together(hub_client, calls=8)

    results = asyncio.run(scenario())

    assert _records(results) == ["AuthenticationFailed"] * 8
    assert hub.token_requests == 1  # 8 before: each call asked in its turn
    refusals = {(error.status, error.problem_type) for error in results}  # type: ignore[union-attr]
    assert refusals == {(401, "invalid-client")}


def test_a_sync_call_whose_renewal_failed_gives_the_turn_back(hub: HubDouble) -> None:
    stranger = ECKey.generate_key("P-256", auto_kid=True)
    with HubClient(hub.url, client_id=CLIENT_ID, key=stranger, timeout=5.0) as hub_client:
        with pytest.raises(AuthenticationFailed):
            hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)
        hub.clients[CLIENT_ID] = stranger  # registered now: the next call renews
        result = _within(10.0, lambda: hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE))

    assert result.record == RECORD
    assert hub.token_requests == 2


def test_fetch_many_of_a_client_the_hub_refuses_asks_one_token(hub: HubDouble) -> None:
    """A sync fetch_many sends its subjects one after another, so each began after the
    previous one's refused renewal and asked again: 20 subjects, 20 token requests, 20
    refused token audit entries at the hub (a hostile review of decision 0057). The hub
    refusing the client now stops the call, as a 503 past the budget does."""
    stranger = ECKey.generate_key("P-256", auto_kid=True)  # not registered at the hub
    subjects = [f"3800108{n:04d}" for n in range(20)]
    with HubClient(hub.url, client_id=CLIENT_ID, key=stranger, timeout=30.0) as hub_client:
        results = hub_client.fetch_many(ITEM, subjects, purpose=PURPOSE)

    assert hub.token_requests == 1
    assert all(isinstance(results[s], AuthenticationFailed) for s in subjects)
    assert all(
        results[s].detail.startswith("not sent: the hub refused this client") for s in subjects[1:]
    )
