"""Publishing is idempotent: a publish repeated with the owner's Idempotency-Key
(draft-ietf-httpapi-idempotency-key-header) is the same event, never a second one,
whether the SDK retries, the adapter's outbox publishes again, or the owner's own
code sends the same key twice. On SQLite and PostgreSQL, real servers on loopback.
"""

from collections.abc import Iterator
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

from tests.hub.exchange_world import ADDRESS, OWNER, SUBJECT, World, exchange_world

OWNER_CLIENT = f"{OWNER}-adapter"
OTHER_OWNER, OTHER_ITEM = "tax", "tax.debt-status"


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[World]:
    with exchange_world(database_url=database_url, tmp_path=tmp_path) as built:
        with built.client() as consumer:
            consumer.subscribe(ADDRESS)  # so that an event also makes a delivery
        yield built


@pytest.fixture
def db(database_url: str) -> Iterator[sa.Engine]:
    engine = make_sync_engine(database_url)
    yield engine
    engine.dispose()


def _register(world: World, client_id: str, department: str) -> ECKey:
    key = ECKey.generate_key("P-256", auto_kid=True)
    with world.hub.admin() as admin:
        admin.put_client(client_id, department=department, jwks=public_jwks(key))
    return key


def _count(db: sa.Engine, query: str) -> int:
    with db.connect() as conn:
        return int(conn.execute(sa.text(query)).scalar_one())


def _events(db: sa.Engine) -> int:
    return _count(db, "SELECT count(*) FROM events")


def _publish_entries(db: sa.Engine) -> list[str]:
    """The outcomes of the committed ``event.publish`` entries, in log order."""
    with db.connect() as conn:
        query = "SELECT outcome FROM audit_entries WHERE action = 'event.publish' ORDER BY idx"
        return list(conn.execute(sa.text(query)).scalars())


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
    world: World, db: sa.Engine
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
    assert _events(db) == 1
    assert _count(db, "SELECT count(*) FROM event_deliveries") == 1
    assert _publish_entries(db) == ["ok"]  # a repeat decides nothing: no second entry
    with db.connect() as conn:
        index = conn.execute(sa.text("SELECT audit_index FROM events")).scalar_one()
    assert body["receipt"]["index"] == index


def test_the_sdk_retrying_a_publish_whose_answer_was_lost_makes_one_event(
    world: World, db: sa.Engine
) -> None:
    key = _register(world, OWNER_CLIENT, OWNER)
    transport = LosingFirstAnswer()
    with HubClient(
        world.hub.url, client_id=OWNER_CLIENT, key=key, transport=transport, retries=2
    ) as owner:
        event_id = owner.publish(ADDRESS, SUBJECT)  # no key given: the SDK makes one per call
    assert transport.lost == 1
    assert _events(db) == 1
    with db.connect() as conn:
        assert conn.execute(sa.text("SELECT id FROM events")).scalar_one() == event_id
    assert _publish_entries(db) == ["ok"]


@pytest.mark.anyio
async def test_the_adapters_outbox_publishing_again_makes_one_event(
    world: World, db: sa.Engine, tmp_path: Path
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
    assert _events(db) == 1
    assert _publish_entries(db) == ["ok"]


def test_the_same_key_for_another_change_is_refused(world: World, db: sa.Engine) -> None:
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
    assert _events(db) == 1
    assert _publish_entries(db) == ["ok", "refused", "refused", "refused"]


def test_keys_are_kept_per_publishing_department(world: World, db: sa.Engine) -> None:
    mine = _register(world, OWNER_CLIENT, OWNER)
    theirs = _register(world, f"{OTHER_OWNER}-adapter", OTHER_OWNER)
    with (
        HubClient(world.hub.url, client_id=OWNER_CLIENT, key=mine) as owner,
        HubClient(world.hub.url, client_id=f"{OTHER_OWNER}-adapter", key=theirs) as other,
    ):
        first = owner.publish(ADDRESS, SUBJECT, idempotency_key="shared")
        second = other.publish(OTHER_ITEM, SUBJECT, idempotency_key="shared")
    assert first != second
    assert _events(db) == 2


@pytest.mark.parametrize("header", ['"has space"', '"' + "x" * 129 + '"', '"k-4', '"a\\"b"'])
def test_a_malformed_key_is_refused(world: World, db: sa.Engine, header: str) -> None:
    key = _register(world, OWNER_CLIENT, OWNER)
    transport = Recording(rewrite=True, header=header)
    with (
        HubClient(world.hub.url, client_id=OWNER_CLIENT, key=key, transport=transport) as owner,
        pytest.raises(InvalidRequest) as refused,
    ):
        owner.publish(ADDRESS, SUBJECT, idempotency_key="k-4")
    assert (refused.value.status, refused.value.problem_type) == (400, "invalid-request")
    assert _events(db) == 0


@pytest.mark.parametrize("bad", ["has space", "x" * 129, 'quo"te', "ümlaut", ""])
def test_the_sdk_refuses_a_key_the_hub_would_refuse(bad: str) -> None:
    key = ECKey.generate_key("P-256", auto_kid=True)
    with (  # refused before anything is sent: nothing listens at this address
        HubClient("http://127.0.0.1:9", client_id=OWNER_CLIENT, key=key) as owner,
        pytest.raises(ValueError, match="idempotency key"),
    ):
        owner.publish(ADDRESS, SUBJECT, idempotency_key=bad)


def test_a_publish_without_a_key_is_a_new_event_each_time(world: World, db: sa.Engine) -> None:
    """A client that sends no key (one written before keys) keeps the old meaning."""
    key = _register(world, OWNER_CLIENT, OWNER)
    transport = Recording(rewrite=True, header=None)
    with HubClient(world.hub.url, client_id=OWNER_CLIENT, key=key, transport=transport) as owner:
        first = owner.publish(ADDRESS, SUBJECT, idempotency_key="k-3")
        second = owner.publish(ADDRESS, SUBJECT, idempotency_key="k-3")
    assert first != second
    assert [status for status, _ in transport.answers] == [202, 202]
    assert _events(db) == 2
