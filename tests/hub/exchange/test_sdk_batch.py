"""The SDK's batch fetch: many subjects in one call, each with its result or refusal."""

import asyncio
from collections.abc import Iterator

import pytest

from onceonly.adapters import AsyncHubClient, NotFound, RecordResult

from tests.hub.exchange_world import (
    ADDRESS,
    ADDRESS_RECORD,
    CONSUMER_CLIENT,
    PURPOSE,
    World,
    module_exchange_world,
)
from tests.hub_testing import DATABASES

SUBJECTS = ["38001085718", "49403136515", "61506230020"]
MISSING = "50001010006"


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """One world per module and database: the batches only read."""
    with module_exchange_world(request, tmp_path_factory) as built:
        for subject in SUBJECTS:
            built.owner_store.put(ADDRESS, subject, ADDRESS_RECORD, announce=False)
        yield built


def test_sync_batch_returns_each_record_and_each_refusal(world: World) -> None:
    with world.client() as client:
        results = client.fetch_many(ADDRESS, [*SUBJECTS, MISSING], purpose=PURPOSE)
    assert set(results) == {*SUBJECTS, MISSING}
    assert all(isinstance(results[s], RecordResult) for s in SUBJECTS)
    assert isinstance(results[MISSING], NotFound)
    indexes = {r.receipt.index for r in results.values() if isinstance(r, RecordResult)}
    assert len(indexes) == 3  # one audit entry each


def test_async_batch_runs_concurrently_with_the_same_answers(world: World) -> None:
    async def fetch() -> dict[str, RecordResult | Exception]:
        async with AsyncHubClient(
            world.hub.url, client_id=CONSUMER_CLIENT, key=world.consumer_key
        ) as client:
            return dict(
                await client.fetch_many(
                    ADDRESS, [*SUBJECTS, MISSING], purpose=PURPOSE, concurrency=2
                )
            )

    results = asyncio.run(fetch())
    assert [type(results[s]).__name__ for s in [*SUBJECTS, MISSING]] == [
        "RecordResult",
        "RecordResult",
        "RecordResult",
        "NotFound",
    ]
    assert all(r.record == ADDRESS_RECORD for r in results.values() if isinstance(r, RecordResult))
