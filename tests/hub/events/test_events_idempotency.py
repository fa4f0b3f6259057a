"""Publishing is idempotent: a publish repeated with the owner's Idempotency-Key
(draft-ietf-httpapi-idempotency-key-header) is the same event, never a second one,
whether the SDK retries, the adapter's outbox publishes again, or the owner's own
code sends the same key twice. On SQLite and PostgreSQL, real servers on loopback.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from joserfc.jwk import ECKey

from onceonly.adapters import (
    AsyncHubClient,
    HubClient,
    InvalidRequest,
    RecordStore,
    public_jwks,
)
from onceonly.adapters._events import ChangePublisher
from onceonly.hub.db import make_sync_engine

from tests.hub.exchange_world import ADDRESS, OWNER, SUBJECT, World, module_exchange_world
from tests.hub_testing import DATABASES

OWNER_CLIENT = f"{OWNER}-adapter"
OTHER_OWNER, OTHER_ITEM = "tax", "tax.debt-status"


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """One world per module and database; each test counts what it added (``Added``)
    and publishes under idempotency keys no other test uses."""
    with module_exchange_world(request, tmp_path_factory) as built:
        with built.client() as consumer:
            consumer.subscribe(ADDRESS)  # so that an event also makes a delivery
        yield built


@dataclass
class Added:
    """What the hub's database gained since the test began."""

    db: sa.Engine
    earlier_events: set[str]
    earlier_entries: int  # the next audit index when the test began

    def events(self) -> list[sa.Row[Any]]:
        """The new events (id, audit_index), in the order they were published."""
        with self.db.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, audit_index FROM events ORDER BY audit_index"))
            return [row for row in rows if row.id not in self.earlier_events]

    def deliveries(self) -> int:
        new = {event.id for event in self.events()}
        with self.db.connect() as conn:
            rows = conn.execute(sa.text("SELECT event_id FROM event_deliveries")).scalars()
            return sum(1 for event_id in rows if event_id in new)

    def publish_entries(self) -> list[str]:
        """The outcomes of the new committed ``event.publish`` entries, in log order."""
        with self.db.connect() as conn:
            query = (
                "SELECT outcome FROM audit_entries"
                " WHERE action = 'event.publish' AND idx >= :since ORDER BY idx"
            )
            return list(conn.execute(sa.text(query), {"since": self.earlier_entries}).scalars())


@pytest.fixture
def added(world: World) -> Iterator[Added]:
    engine = make_sync_engine(str(world.hub.settings.database_url))
    with engine.connect() as conn:
        events = set(conn.execute(sa.text("SELECT id FROM events")).scalars())
        entries = conn.execute(sa.text("SELECT count(*) FROM audit_entries")).scalar_one()
    yield Added(engine, events, int(entries))
    engine.dispose()


def _register(world: World, client_id: str, department: str) -> ECKey:
    key = ECKey.generate_key("P-256", auto_kid=True)
    with world.hub.admin() as admin:
        admin.put_client(client_id, department=department, jwks=public_jwks(key))
    return key


class Recording(httpx.HTTPTransport):
    """Real HTTP; keeps the status and body of every answer to a publish. With
    ``rewrite``, first replaces each publish's Idempotency-Key header with ``header``
    (None: sends none, as a client written before keys would)."""

    def __init__(self, *, rewrite: bool = False, header: str | None = None) -> None:
        super().__init__()
        self.rewrite, self.header = rewrite, header
        self.answers: list[tuple[int, Any]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        publishing = request.url.path.endswith("/events")
        if publishing and self.rewrite:
            del request.headers["Idempotency-Key"]
            if self.header is not None:
                request.headers["Idempotency-Key"] = self.header
        response = super().handle_request(request)
        if publishing:
            response.read()
            self.answers.append((response.status_code, response.json()))
        return response


class LosingFirstAnswer(httpx.HTTPTransport):
    """Real HTTP, but the answer to the first publish is lost on its way back (the
    hub has committed the event; the client sees a timeout and tries again)."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path.endswith("/events") and not self.lost:
            self.lost += 1
            response.close()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


class AsyncLosingFirstAnswer(httpx.AsyncHTTPTransport):
    """LosingFirstAnswer, for the adapter's (async) change publisher."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.url.path.endswith("/events") and not self.lost:
            self.lost += 1
            await response.aclose()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


def test_a_publish_repeated_with_its_key_answers_the_first_event(
    world: World, added: Added
) -> None:
    key = _register(world, OWNER_CLIENT, OWNER)
    transport = Recording()
    with HubClient(world.hub.url, client_id=OWNER_CLIENT, key=key, transport=transport) as owner:
        first = owner.publish(ADDRESS, SUBJECT, idempotency_key="change-0001")
        again = owner.publish(ADDRESS, SUBJECT, idempotency_key="change-0001")
    assert again == first
    (created, body), (repeated, same_body) = transport.answers
    assert (created, repeated) == (202, 200)
    assert same_body == body  # the same event id, subscriber count and receipt
    assert body["subscribers"] == 1
    (event,) = added.events()
    assert added.deliveries() == 1
    assert added.publish_entries() == ["ok"]  # a repeat decides nothing: no second entry
    assert body["receipt"]["index"] == event.audit_index


def test_the_sdk_retrying_a_publish_whose_answer_was_lost_makes_one_event(
    world: World, added: Added
) -> None:
    key = _register(world, OWNER_CLIENT, OWNER)
    transport = LosingFirstAnswer()
    with HubClient(
        world.hub.url, client_id=OWNER_CLIENT, key=key, transport=transport, retries=2
    ) as owner:
        event_id = owner.publish(ADDRESS, SUBJECT)  # no key given: the SDK makes one per call
    assert transport.lost == 1
    assert [event.id for event in added.events()] == [event_id]
    assert added.publish_entries() == ["ok"]


@pytest.mark.anyio
async def test_the_adapters_outbox_publishing_again_makes_one_event(
    world: World, added: Added, tmp_path: Path
) -> None:
    """The hub commits the event, its answer is lost, the change stays in the outbox
    and is published again in the next round: still one event."""
    key = _register(world, OWNER_CLIENT, OWNER)
    transport = AsyncLosingFirstAnswer()
    with RecordStore(tmp_path / "outbox.db") as store:
        store.put(ADDRESS, SUBJECT, {"street": "Uus 2"})
        async with AsyncHubClient(
            world.hub.url, client_id=OWNER_CLIENT, key=key, retries=0, transport=transport
        ) as client:
            publisher = ChangePublisher(store, client)
            assert await publisher.publish_pending() == 0  # the answer was lost
            assert len(store.pending_changes()) == 1
            assert await publisher.publish_pending() == 1
            assert store.pending_changes() == []
    assert len(added.events()) == 1
    assert added.publish_entries() == ["ok"]


def test_the_same_key_for_another_change_is_refused(world: World, added: Added) -> None:
    key = _register(world, OWNER_CLIENT, OWNER)
    with HubClient(world.hub.url, client_id=OWNER_CLIENT, key=key, retries=0) as owner:
        owner.publish(ADDRESS, SUBJECT, idempotency_key="k-2")
        for other in (
            {"subject": "49403136515"},
            {"kind": "deleted"},
            {"item": "person.identity"},
        ):
            change: dict[str, Any] = {"item": ADDRESS, "subject": SUBJECT, "kind": "changed"}
            change.update(other)
            with pytest.raises(InvalidRequest) as refused:
                owner.publish(
                    change["item"], change["subject"], kind=change["kind"], idempotency_key="k-2"
                )
            assert (refused.value.status, refused.value.problem_type) == (
                422,
                "idempotency-key-reused",
            )
    assert len(added.events()) == 1
    assert added.publish_entries() == ["ok", "refused", "refused", "refused"]


def test_keys_are_kept_per_publishing_department(world: World, added: Added) -> None:
    mine = _register(world, OWNER_CLIENT, OWNER)
    theirs = _register(world, f"{OTHER_OWNER}-adapter", OTHER_OWNER)
    with (
        HubClient(world.hub.url, client_id=OWNER_CLIENT, key=mine) as owner,
        HubClient(world.hub.url, client_id=f"{OTHER_OWNER}-adapter", key=theirs) as other,
    ):
        first = owner.publish(ADDRESS, SUBJECT, idempotency_key="shared")
        second = other.publish(OTHER_ITEM, SUBJECT, idempotency_key="shared")
    assert first != second
    assert len(added.events()) == 2


@pytest.mark.parametrize("header", ['"has space"', '"' + "x" * 129 + '"', '"k-4', '"a\\"b"'])
def test_a_malformed_key_is_refused(world: World, added: Added, header: str) -> None:
    key = _register(world, OWNER_CLIENT, OWNER)
    transport = Recording(rewrite=True, header=header)
    with (
        HubClient(world.hub.url, client_id=OWNER_CLIENT, key=key, transport=transport) as owner,
        pytest.raises(InvalidRequest) as refused,
    ):
        owner.publish(ADDRESS, SUBJECT, idempotency_key="k-4")
    assert (refused.value.status, refused.value.problem_type) == (400, "invalid-request")
    assert len(added.events()) == 0


@pytest.mark.parametrize("bad", ["has space", "x" * 129, 'quo"te', "ümlaut", ""])
def test_the_sdk_refuses_a_key_the_hub_would_refuse(bad: str) -> None:
    key = ECKey.generate_key("P-256", auto_kid=True)
    with (  # refused before anything is sent: nothing listens at this address
        HubClient("http://127.0.0.1:9", client_id=OWNER_CLIENT, key=key) as owner,
        pytest.raises(ValueError, match="idempotency key"),
    ):
        owner.publish(ADDRESS, SUBJECT, idempotency_key=bad)


def test_a_publish_without_a_key_is_a_new_event_each_time(world: World, added: Added) -> None:
    """A client that sends no key (one written before keys) keeps the old meaning."""
    key = _register(world, OWNER_CLIENT, OWNER)
    transport = Recording(rewrite=True, header=None)
    with HubClient(world.hub.url, client_id=OWNER_CLIENT, key=key, transport=transport) as owner:
        first = owner.publish(ADDRESS, SUBJECT, idempotency_key="k-3")
        second = owner.publish(ADDRESS, SUBJECT, idempotency_key="k-3")
    assert first != second
    assert [status for status, _ in transport.answers] == [202, 202]
    assert len(added.events()) == 2
