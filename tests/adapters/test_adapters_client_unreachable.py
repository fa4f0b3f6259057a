"""When the hub cannot be reached, the consumer SDK stops asking: the calls that waited
for the one discovery or token renewal that found it so fail with its error, and a
``fetch_many`` sends no more subjects (decision 0057).

On the wire: a loopback port whose server closes every connection it accepts before
answering (what a client sees of a hub that went away behind a proxy), counting them.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from joserfc.jwk import ECKey

from onceonly.adapters import AsyncHubClient, HubClient, HubUnavailable, OnceonlyError, RecordResult

from tests.adapters.adapter_testing import CLIENT_ID, ITEM, PURPOSE, SUBJECT
from tests.adapters.test_adapters_client_tokens import _fetch_together, _records

# A fetch's discovery, sent three times: once, and the budget's two repeats
ATTEMPTS = 3
SUBJECTS = [f"{SUBJECT[:-2]}{number:02}" for number in range(20)]


@dataclass
class Gone:
    """The hub's address, and how many connections its server accepted and dropped."""

    url: str
    connections: int = 0


@contextmanager
def _gone() -> Iterator[Gone]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        gone = Gone(f"http://127.0.0.1:{server.getsockname()[1]}")

        def drop_each() -> None:
            with suppress(OSError):  # the listening socket was shut down: the test is over
                while True:
                    connection, _ = server.accept()
                    gone.connections += 1
                    connection.close()

        dropping = threading.Thread(target=drop_each, daemon=True)
        dropping.start()
        try:
            yield gone
        finally:
            server.shutdown(socket.SHUT_RDWR)  # wakes the thread's accept()
            dropping.join(timeout=5)


def _not_sent(results: dict[str, RecordResult | OnceonlyError]) -> list[str]:
    """The subjects whose error says they were not sent."""
    return [
        subject
        for subject, result in results.items()
        if isinstance(result, HubUnavailable) and result.detail.startswith("not sent")
    ]


def test_calls_that_waited_for_an_unreachable_hub_fail_with_its_error(client_key: ECKey) -> None:
    async def scenario(url: str) -> list[RecordResult | BaseException]:
        async with AsyncHubClient(url, client_id=CLIENT_ID, key=client_key) as hub_client:
            return await _fetch_together(hub_client, calls=10)

    with _gone() as gone:
        results = asyncio.run(scenario(gone.url))

    assert _records(results) == ["HubUnavailable"] * 10
    assert gone.connections == ATTEMPTS  # before: 30, three for each call


def test_fetch_many_stops_once_the_hub_cannot_be_reached(client_key: ECKey) -> None:
    with _gone() as gone, HubClient(gone.url, client_id=CLIENT_ID, key=client_key) as hub_client:
        results = hub_client.fetch_many(ITEM, SUBJECTS, purpose=PURPOSE)

    assert list(results) == SUBJECTS
    assert all(isinstance(error, HubUnavailable) for error in results.values())
    assert _not_sent(results) == SUBJECTS[1:]
    assert gone.connections == ATTEMPTS  # before: 60, three for each subject


def test_the_async_fetch_many_stops_once_the_hub_cannot_be_reached(client_key: ECKey) -> None:
    """The first four subjects are under way together: one discovers, and the other three
    wait for it and share its error; the rest are not sent."""

    async def scenario(url: str) -> dict[str, RecordResult | OnceonlyError]:
        async with AsyncHubClient(url, client_id=CLIENT_ID, key=client_key) as hub_client:
            return await hub_client.fetch_many(ITEM, SUBJECTS, purpose=PURPOSE, concurrency=4)

    with _gone() as gone:
        results = asyncio.run(scenario(gone.url))

    assert sorted(results) == SUBJECTS
    assert all(isinstance(error, HubUnavailable) for error in results.values())
    assert len(_not_sent(results)) == len(SUBJECTS) - 4
    assert gone.connections == ATTEMPTS  # before: 60
