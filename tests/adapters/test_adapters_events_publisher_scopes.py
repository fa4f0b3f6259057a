"""The change publisher and the ``publish:`` scopes of its token, against a real hub.

A token carries the scopes of the items the department owned when it was issued. A
change to an item registered since is refused ``403 insufficient-scope``; the SDK then
asks for a token after that refusal (one renewal, in the client's turn) and publishes
the change once more, so that it is not dropped. A change to an item the department
does not own is still dropped, after one renewal, and another change of that item
costs no renewal at all (decision 0065). On SQLite and PostgreSQL, real servers on
loopback."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
from joserfc.jwk import ECKey

from onceonly.adapters import AsyncHubClient, RecordStore, public_jwks
from onceonly.adapters._events import ChangePublisher

from tests.adapters import test_adapters_events_publisher_hub as on_a_hub
from tests.hub.exchange_world import ADDRESS, ADDRESS_RECORD, OWNER, SUBJECT, World
from tests.hub_testing import added_audit_entries, load_item

# its world, a real hub on each database, built for this module too
world = on_a_hub.world

ELSEWHERE = "tax.debt-status"  # shared, and owned by the tax department, not the owner
OTHER_SUBJECT = "49002124277"


async def holding_a_token(publisher: ChangePublisher, store: RecordStore) -> None:
    """Publish a change of the owner's item, so that the adapter holds a token."""
    store.put(ADDRESS, SUBJECT, ADDRESS_RECORD)
    assert await publisher.publish_pending() == 1


Scenario = Callable[[AsyncHubClient, ChangePublisher, RecordStore], Awaitable[None]]


def run(world: World, outbox: Path, scenario: Scenario) -> None:
    """``scenario`` with the owner's client as its adapter publishes (no repeats of its
    own; a client of the test's own, registered now) once it holds a token, a change
    publisher with it over ``outbox``, and the outbox; all on one event loop."""
    client_id = f"{OWNER}-publisher-{uuid.uuid4().hex[:8]}"
    key = ECKey.generate_key("P-256", auto_kid=True)
    with world.hub.admin() as admin:
        admin.put_client(client_id, department=OWNER, jwks=public_jwks(key))

    async def on_one_loop() -> None:
        async with AsyncHubClient(world.hub.url, client_id=client_id, key=key, retries=0) as hub:
            with RecordStore(outbox) as store:
                publisher = ChangePublisher(store, hub)
                await holding_a_token(publisher, store)
                await scenario(hub, publisher, store)

    asyncio.run(on_one_loop())


def register_item(world: World) -> str:
    """A new item of the owner's, registered now: its id."""
    item = f"person.added-{uuid.uuid4().hex[:12]}"
    with world.hub.admin() as admin:
        admin.put_item({**load_item(ADDRESS), "id": item, "title": "Added address"})
    return item


@contextmanager
def added_entries(world: World) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """The ``token.issue`` and ``event.publish`` entries that the block adds."""
    with (
        added_audit_entries(world.hub, action="token.issue") as tokens,
        added_audit_entries(world.hub, action="event.publish") as events,
    ):
        yield tokens, events


def outcomes(entries: list[dict[str, Any]], item: str) -> list[str]:
    """The outcomes of the ``event.publish`` entries of ``item``, in order."""
    return [entry["outcome"] for entry in entries if entry.get("item") == item]


def test_a_change_to_an_item_registered_after_the_token_reaches_the_hub(
    world: World, tmp_path: Path
) -> None:
    async def scenario(hub: AsyncHubClient, publisher: ChangePublisher, store: RecordStore) -> None:
        item = register_item(world)  # which that token knows nothing of
        store.put(item, SUBJECT, ADDRESS_RECORD)
        with added_entries(world) as (tokens, events):
            accepted = await publisher.publish_pending()

        assert (accepted, store.pending_changes()) == (1, [])
        assert outcomes(events, item) == ["refused", "ok"]  # the old token, a new one
        assert len(tokens) == 1

    run(world, tmp_path / "outbox.db", scenario)


def test_publishes_refused_the_scope_at_once_share_one_renewal(
    world: World, tmp_path: Path
) -> None:
    async def scenario(hub: AsyncHubClient, publisher: ChangePublisher, store: RecordStore) -> None:
        item = register_item(world)
        event_ids: list[str] = []

        async def publish(subject: str) -> None:
            event_ids.append(await hub.publish(item, subject))

        with added_audit_entries(world.hub, action="token.issue") as tokens:
            async with anyio.create_task_group() as group:
                for subject in (SUBJECT, OTHER_SUBJECT, "60001019906", "37605030299"):
                    group.start_soon(publish, subject)

        assert len(set(event_ids)) == 4
        assert len(tokens) == 1

    run(world, tmp_path / "outbox.db", scenario)


def test_a_change_to_an_item_of_another_department_is_dropped_after_one_renewal(
    world: World, tmp_path: Path
) -> None:
    async def scenario(hub: AsyncHubClient, publisher: ChangePublisher, store: RecordStore) -> None:
        store.put(ELSEWHERE, SUBJECT, {"status": "none"})
        with added_entries(world) as (tokens, events):
            assert await publisher.publish_pending() == 0

        assert store.pending_changes() == []  # dropped
        assert outcomes(events, ELSEWHERE) == ["refused", "refused"]  # once more, no more
        assert len(tokens) == 1  # exactly one renewal

        # Another change of that item, in the next round beside one of the owner's: the
        # token was asked for after the item's refusal, so no renewal for it
        store.put(ELSEWHERE, OTHER_SUBJECT, {"status": "none"})
        store.put(ADDRESS, SUBJECT, {**ADDRESS_RECORD, "street": "Pikk 2"})
        with added_entries(world) as (tokens, events):
            assert await publisher.publish_pending() == 1

        assert store.pending_changes() == []
        assert outcomes(events, ELSEWHERE) == ["refused"]
        assert outcomes(events, ADDRESS) == ["ok"]
        assert tokens == []

    run(world, tmp_path / "outbox.db", scenario)
