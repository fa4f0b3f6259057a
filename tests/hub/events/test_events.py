"""Change events end to end: an owner publishes, the hub delivers, subscribers receive.

The hub and both departments' adapters run as real servers on loopback, on
SQLite and PostgreSQL.
"""

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI, Response
from joserfc import jwt
from joserfc.jwk import ECKey

from onceonly.adapters import (
    AccessDenied,
    AdapterConfig,
    DeliveredEvent,
    HubClient,
    InvalidRequest,
    RecordStore,
    StoreItem,
    create_provider_app,
    load_or_create_key,
    public_jwks,
)
from onceonly.hub.audit import leaves
from onceonly.hub.db import make_sync_engine
from onceonly.hub.events.tokens import mint_event_token

from tests.hub.audit.hub_copies import Copies
from tests.hub_testing import CATALOGUE, RunningHub, running_hub, serve, wait_until

OWNER, CONSUMER = "civil-registry", "social-welfare"
ADDRESS = "person.residential-address"
SUBJECT = "38001085718"
FAST_POLLS = {"event_poll_interval": 0.05}
"""Every test hub's deliverer looks for due deliveries every 50 ms, not every 0.5 s: a
delivery made due by a test (reset, or published at a replica) is found at once."""
FAST_RETRIES = {"event_retry_base": 0.05, "event_retry_cap": 0.2, **FAST_POLLS}


@dataclass
class EventWorld:
    hub: RunningHub
    owner_key: ECKey
    consumer_key: ECKey
    received: list[DeliveredEvent] = field(default_factory=list)

    def owner(self) -> HubClient:
        return HubClient(self.hub.url, client_id=f"{OWNER}-adapter", key=self.owner_key, retries=0)

    def consumer(self) -> HubClient:
        return HubClient(
            self.hub.url, client_id=f"{CONSUMER}-adapter", key=self.consumer_key, retries=0
        )

    def publish(self, subject: str = SUBJECT, kind: str = "changed") -> str:
        with self.owner() as owner:
            return owner.publish(ADDRESS, subject, kind=kind)

    def subscribe(self, item: str = ADDRESS) -> None:
        with self.consumer() as consumer:
            consumer.subscribe(item)

    def entries(self, action: str) -> list[dict[str, Any]]:
        with self.hub.admin() as admin:
            return [e["entry"] for e in admin.audit_entries(action=action)["entries"]]


WorldMaker = Callable[..., AbstractContextManager[EventWorld]]


@contextmanager
def consumer_adapter(
    world: EventWorld,
    tmp_path: Path,
    *,
    on_event: Callable[[DeliveredEvent], None] | None = None,
) -> Iterator[str]:
    """The subscriber's adapter: each event it receives goes to ``on_event``, then
    into ``world.received``."""

    def receive(event: DeliveredEvent) -> None:
        if on_event is not None:
            on_event(event)
        world.received.append(event)

    config = AdapterConfig(
        department=CONSUMER, hub_url=world.hub.url, data_dir=tmp_path / "consumer"
    )
    with serve(create_provider_app(config, on_event=receive)) as url:
        yield url


def _build(database_url: str, scratch: Path) -> tuple[Path, dict[str, Any]]:
    """The catalogue, both departments' clients and the consumer's grant (saved once
    per database, copied for each test)."""
    keys = {
        department: ECKey.generate_key("P-256", auto_kid=True) for department in (OWNER, CONSUMER)
    }
    with running_hub(database_url=database_url, data_dir=scratch / "hub") as hub:
        with hub.admin() as admin:
            admin.import_catalogue(CATALOGUE)
            for department, key in keys.items():
                admin.put_client(
                    f"{department}-adapter", department=department, jwks=public_jwks(key)
                )
            admin.create_grant(
                consumer=CONSUMER, item=ADDRESS, purpose="benefit-eligibility", legal_basis="test"
            )
    return scratch / "hub", {d: key.as_dict(private=True) for d, key in keys.items()}


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> Copies:
    return Copies(tmp_path_factory.mktemp("copies"))


@pytest.fixture
def event_world(copies: Copies) -> WorldMaker:
    """``event_world(database_url, tmp_path, **settings)``: a hub of the test's own on a
    copy of the module's saved world (each test counts every event and delivery)."""

    @contextmanager
    def world(database_url: str, tmp_path: Path, **settings: Any) -> Iterator[EventWorld]:
        data_dir = tmp_path / "hub"
        keys = copies.world("events", database_url, data_dir, _build)
        with running_hub(
            database_url=database_url, data_dir=data_dir, **{**FAST_POLLS, **settings}
        ) as hub:
            yield EventWorld(
                hub=hub,
                owner_key=ECKey.import_key(keys[OWNER]),
                consumer_key=ECKey.import_key(keys[CONSUMER]),
            )

    return world


def _point(world: EventWorld, url: str) -> None:
    with world.hub.admin() as admin:
        admin.put_department(CONSUMER, name="Social Welfare Board", adapter_url=url)


def test_subscriber_receives_a_signed_event_and_the_hub_audits_it(
    database_url: str, tmp_path: Path, event_world: WorldMaker
) -> None:
    with event_world(database_url, tmp_path) as world, consumer_adapter(world, tmp_path) as url:
        _point(world, url)
        world.subscribe()
        event_id = world.publish()
        wait_until(lambda: len(world.received) == 1)
        event = world.received[0]
        assert (event.item, event.kind, event.subject, event.owner) == (
            ADDRESS,
            "changed",
            SUBJECT,
            OWNER,
        )
        wait_until(lambda: len(world.entries("event.deliver")) == 1)
        (publish,) = world.entries("event.publish")
        (deliver,) = world.entries("event.deliver")
        assert publish["event"] == deliver["event"] == event.event_id == event_id
        assert (deliver["department"], deliver["outcome"]) == (CONSUMER, "ok")
        assert SUBJECT not in str(publish) + str(deliver)
        # the owner's entry commits to the pseudonym (0069's follow-up: the hub never
        # checks that a subject is the owner's); the entitled subscriber's names it
        pseudonym = world.hub.keys.pseudonym(SUBJECT)
        assert "subject" not in publish
        assert leaves.commits_to(publish, pseudonym)
        assert deliver["subject"] == pseudonym


def test_delivered_event_no_longer_keeps_the_raw_subject(
    database_url: str, tmp_path: Path, event_world: WorldMaker
) -> None:
    with event_world(database_url, tmp_path) as world, consumer_adapter(world, tmp_path) as url:
        _point(world, url)
        world.subscribe()
        world.publish()
        wait_until(lambda: len(world.received) == 1)
        engine = make_sync_engine(database_url)

        def subject_erased() -> bool:
            with engine.connect() as conn:
                return conn.execute(sa.text("SELECT subject FROM events")).scalar() is None

        wait_until(subject_erased)
        engine.dispose()


def test_only_the_owner_publishes(
    database_url: str, tmp_path: Path, event_world: WorldMaker
) -> None:
    with event_world(database_url, tmp_path) as world, world.consumer() as consumer:
        with pytest.raises(AccessDenied) as refused:
            consumer.publish(ADDRESS, SUBJECT)
        assert refused.value.problem_type == "insufficient-scope"
        # refused, and refused again with a token asked for after that (decision 0065)
        assert [entry["outcome"] for entry in world.entries("event.publish")] == ["refused"] * 2


@pytest.mark.parametrize("subject", [SUBJECT + " ", "\t" + SUBJECT, "Mu\u0308ller"])
def test_a_published_subject_follows_the_record_querys_rule(
    database_url: str, tmp_path: Path, event_world: WorldMaker, subject: str
) -> None:
    """A padded, tabbed or non-NFC subject is refused at publish as at the record query
    (decision 0061): before, the event was filed under the padded text's pseudonym and
    missing from the subject's audit query (a hostile review)."""
    with event_world(database_url, tmp_path) as world, world.owner() as owner:
        with pytest.raises(InvalidRequest) as refused:
            owner.publish(ADDRESS, subject)
        assert refused.value.status == 400
        assert "subject" in refused.value.detail
        (entry,) = world.entries("event.publish")
        assert (entry["outcome"], entry["reason"]) == ("refused", "invalid-request")


def test_subscribing_needs_a_grant(
    database_url: str, tmp_path: Path, event_world: WorldMaker
) -> None:
    with event_world(database_url, tmp_path) as world, pytest.raises(AccessDenied):
        world.subscribe("person.identity")


def test_the_owners_adapter_announces_changes_to_its_store_by_itself(
    database_url: str, tmp_path: Path, event_world: WorldMaker
) -> None:
    with event_world(database_url, tmp_path) as world, consumer_adapter(world, tmp_path) as url:
        _point(world, url)
        world.subscribe()
        config = AdapterConfig(
            department=OWNER,
            hub_url=world.hub.url,
            data_dir=tmp_path / "owner",
            client_id=f"{OWNER}-adapter",
            items={ADDRESS: StoreItem()},
        )
        key = load_or_create_key(config.key_path)  # the adapter's own client key
        with world.hub.admin() as admin:
            admin.put_client(f"{OWNER}-adapter", department=OWNER, jwks=public_jwks(key))
        moved = {"street": "Uus 2", "city": "Tartu", "postal_code": "51003", "country": "ND"}
        with serve(create_provider_app(config)), RecordStore(config.store_path) as store:
            store.put(ADDRESS, SUBJECT, moved)
            wait_until(lambda: len(world.received) == 1)
            store.delete(ADDRESS, SUBJECT)
            wait_until(lambda: len(world.received) == 2)
            assert store.pending_changes() == []
        assert [event.kind for event in world.received] == ["changed", "deleted"]


def test_failing_subscriber_becomes_a_dead_letter_that_can_be_replayed(
    database_url: str, tmp_path: Path, event_world: WorldMaker
) -> None:
    settings = {**FAST_RETRIES, "event_max_attempts": 3}
    with event_world(database_url, tmp_path, **settings) as world:
        _point(world, "http://127.0.0.1:9")  # nothing listens there
        world.subscribe()
        world.publish()
        with world.hub.admin() as admin:
            wait_until(lambda: len(admin.dead_letters()) == 1)
            (dead,) = admin.dead_letters()
            assert dead["attempts"] == 3
            assert world.entries("event.deliver")[-1]["reason"] == "dead-letter"
            with consumer_adapter(world, tmp_path) as url:
                _point(world, url)
                admin.replay_delivery(dead["id"])
                wait_until(lambda: len(world.received) == 1)
            assert admin.dead_letters() == []


def test_redelivered_event_is_handled_once(
    database_url: str, tmp_path: Path, event_world: WorldMaker
) -> None:
    with event_world(database_url, tmp_path) as world, consumer_adapter(world, tmp_path) as url:
        _point(world, url)
        world.subscribe()
        world.publish()
        wait_until(lambda: len(world.received) == 1)
        engine = make_sync_engine(database_url)

        def settled() -> bool:  # the hub has recorded the delivery and let go of it
            with engine.connect() as conn:
                statement = "SELECT status, lease_token FROM event_deliveries"
                return conn.execute(sa.text(statement)).all() == [("delivered", None)]

        # Only then: resetting it while the hub still held its lease would be undone
        # by the hub's own settling (the race that made this test flaky).
        wait_until(settled, what="the delivery settled")
        with engine.begin() as conn:  # as if the acknowledgement had been lost
            conn.execute(sa.text("UPDATE event_deliveries SET status = 'pending', attempts = 1"))
            conn.execute(sa.text("UPDATE events SET subject = :s"), {"s": SUBJECT})
        engine.dispose()
        wait_until(lambda: len(world.entries("event.deliver")) == 2)
        assert len(world.received) == 1


def test_revoked_grant_cancels_pending_deliveries(
    database_url: str, tmp_path: Path, event_world: WorldMaker
) -> None:
    with event_world(database_url, tmp_path, **FAST_RETRIES) as world:
        _point(world, "http://127.0.0.1:9")
        world.subscribe()
        with world.hub.admin() as admin:
            grant = admin.list_grants(consumer=CONSUMER)[0]
            world.publish()
            admin.revoke_grant(grant["id"])
        wait_until(lambda: any(e["outcome"] == "refused" for e in world.entries("event.deliver")))
        assert world.received == []


def test_two_hub_replicas_deliver_every_event_once(
    database_url: str, tmp_path: Path, event_world: WorldMaker
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("replicas share a PostgreSQL database")
    with (
        event_world(database_url, tmp_path) as world,
        running_hub(  # a replica: the same database, keys and issuer
            database_url=database_url,
            data_dir=tmp_path / "hub",
            issuer=world.hub.settings.issuer,
            **FAST_POLLS,
        ),
        consumer_adapter(world, tmp_path) as url,
    ):
        _point(world, url)
        world.subscribe()
        for n in range(20):
            world.publish(subject=f"3800108{n:04d}")
        wait_until(lambda: len(world.entries("event.deliver")) == 20, within=20)
        ids = [event.event_id for event in world.received]
        assert len(ids) == len(set(ids)) == 20


def test_delivery_resumes_after_the_hub_restarts(
    database_url: str, tmp_path: Path, event_world: WorldMaker
) -> None:
    # Both hubs keep retrying while the subscriber is unreachable (the first while it
    # stops, the second until the subscriber is pointed at a live adapter). With ten
    # attempts 0.2 s apart, a slow restart on a busy CI machine turned the delivery into
    # a dead letter before the adapter was up. A minute of retries, at most a second
    # apart, leaves only a lost delivery to fail this test.
    patient = {**FAST_RETRIES, "event_retry_cap": 1.0, "event_max_attempts": 100}
    with event_world(database_url, tmp_path, **patient) as world:
        _point(world, "http://127.0.0.1:9")  # the subscriber is down: the delivery waits
        world.subscribe()
        world.publish()
        engine = make_sync_engine(database_url)

        def attempted() -> bool:
            with engine.connect() as conn:
                query = sa.text("SELECT attempts FROM event_deliveries WHERE status = 'pending'")
                return (conn.execute(query).scalar() or 0) > 0

        wait_until(attempted)
    with engine.connect() as conn:  # the hub stopped between rounds: nothing stays leased
        query = "SELECT count(*) FROM event_deliveries WHERE lease_token IS NOT NULL"
        assert conn.execute(sa.text(query)).scalar() == 0
    engine.dispose()
    with running_hub(database_url=database_url, data_dir=tmp_path / "hub", **patient) as hub:
        again = EventWorld(hub=hub, owner_key=world.owner_key, consumer_key=world.consumer_key)
        with consumer_adapter(again, tmp_path) as url:
            _point(again, url)
            wait_until(lambda: len(again.received) == 1, within=20)
        assert again.received[0].subject == SUBJECT


def test_each_delivery_attempt_gets_its_own_jti() -> None:
    """Two attempts in the same second must not look like a replay to the adapter."""
    key = ECKey.generate_key("P-256", auto_kid=True)
    values = {
        "key": key,
        "issuer": "https://hub.test",
        "subscriber": CONSUMER,
        "owner": OWNER,
        "event_id": "e1",
        "item": ADDRESS,
        "kind": "changed",
        "subject": SUBJECT,
        "published_at": "2027-01-15T08:00:00.000Z",
        "now": 1_800_000_000,
        "lifetime": 60,
    }
    first, second = (jwt.decode(mint_event_token(**values), key) for _ in range(2))
    assert first.claims["jti"] != second.claims["jti"]
    assert first.claims["iat"] == second.claims["iat"]
    assert first.claims["published_at"] == values["published_at"]  # signed, as the body's


# Fail closed: no audit entry, no delivery (docs/events.md, "Audit: no entry, no delivery").

REFUSE_DELIVERY_ENTRIES = {
    "sqlite": [
        "CREATE TRIGGER refuse_event_deliver BEFORE INSERT ON audit_entries"
        " WHEN NEW.action = 'event.deliver'"
        " BEGIN SELECT RAISE(ABORT, 'the audit log refuses'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_audit_entry() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE EXCEPTION 'the audit log refuses'; END $$",
        "CREATE TRIGGER refuse_event_deliver BEFORE INSERT ON audit_entries FOR EACH ROW"
        " WHEN (NEW.action = 'event.deliver') EXECUTE FUNCTION refuse_audit_entry()",
    ],
}
ACCEPT_DELIVERY_ENTRIES = {
    "sqlite": ["DROP TRIGGER refuse_event_deliver"],
    "postgresql": [
        "DROP TRIGGER refuse_event_deliver ON audit_entries",
        "DROP FUNCTION refuse_audit_entry()",
    ],
}


@pytest.fixture
def db(database_url: str) -> Iterator[sa.Engine]:
    """The hub's database, read by the tests and by subscribers that check the log."""
    engine = make_sync_engine(database_url)
    yield engine
    engine.dispose()


@contextmanager
def audit_log_refusing_deliveries(db: sa.Engine) -> Iterator[None]:
    """The database refuses ``event.deliver`` entries, so the hub's real audit writer
    cannot commit them (as with a full disk) until the block ends; other entries, such
    as the publisher's, still commit."""
    for statement in REFUSE_DELIVERY_ENTRIES[db.dialect.name]:
        with db.begin() as conn:
            conn.execute(sa.text(statement))
    try:
        yield
    finally:
        for statement in ACCEPT_DELIVERY_ENTRIES[db.dialect.name]:
            with db.begin() as conn:
                conn.execute(sa.text(statement))


def delivery_entries(db: sa.Engine) -> list[dict[str, Any]]:
    """The committed ``event.deliver`` entries, in log order, read from the database."""
    with db.connect() as conn:
        query = "SELECT leaf FROM audit_entries WHERE action = 'event.deliver' ORDER BY idx"
        return [json.loads(leaf) for leaf in conn.execute(sa.text(query)).scalars()]


def the_delivery(db: sa.Engine) -> tuple[str, int, str | None]:
    """Status, attempts and last error of the world's only delivery."""
    with db.connect() as conn:
        query = "SELECT status, attempts, last_error FROM event_deliveries"
        status, attempts, last_error = conn.execute(sa.text(query)).one()
    return status, attempts, last_error


def the_delivery_id(db: sa.Engine) -> str:
    with db.connect() as conn:
        return str(conn.execute(sa.text("SELECT id FROM event_deliveries")).scalar_one())


def test_no_delivery_while_its_audit_entry_cannot_be_committed(
    database_url: str, tmp_path: Path, event_world: WorldMaker, db: sa.Engine
) -> None:
    logged_on_arrival: list[list[str]] = []  # events with a deliver entry, as each arrived

    def read_the_log(_event: DeliveredEvent) -> None:
        logged_on_arrival.append([entry["event"] for entry in delivery_entries(db)])

    settings = {**FAST_RETRIES, "event_max_attempts": 2}
    with (
        event_world(database_url, tmp_path, **settings) as world,
        consumer_adapter(world, tmp_path, on_event=read_the_log) as url,
    ):
        _point(world, url)
        world.subscribe()
        with audit_log_refusing_deliveries(db):
            event_id = world.publish()
            wait_until(lambda: bool(world.received) or the_delivery(db)[2] is not None)
            time.sleep(0.5)  # ten retry periods: two counted attempts would make a dead letter
            assert world.received == []
            assert the_delivery(db) == ("pending", 0, "audit log unavailable")
        wait_until(lambda: the_delivery(db)[0] == "delivered")
        assert [event.event_id for event in world.received] == [event_id]
        assert logged_on_arrival == [[event_id]]
        assert the_delivery(db)[1] == 0
        (entry,) = world.entries("event.deliver")
        assert (entry["event"], entry["outcome"], entry["department"]) == (event_id, "ok", CONSUMER)


def test_each_call_is_audited_before_it_is_made_and_each_failure_after_it(
    database_url: str, tmp_path: Path, event_world: WorldMaker, db: sa.Engine
) -> None:
    logged_at_call: list[list[tuple[str, str | None]]] = []
    refusing = FastAPI()

    @refusing.post("/v1/events")
    def refuse() -> Response:
        logged_at_call.append([(e["outcome"], e.get("reason")) for e in delivery_entries(db)])
        return Response(status_code=503)

    settings = {**FAST_RETRIES, "event_max_attempts": 2}
    with event_world(database_url, tmp_path, **settings) as world, serve(refusing) as url:
        _point(world, url)
        world.subscribe()
        world.publish()
        with world.hub.admin() as admin:
            wait_until(lambda: len(admin.dead_letters()) == 1)
        ok, failed, dead = ("ok", None), ("failed", "delivery-failed"), ("failed", "dead-letter")
        assert logged_at_call == [[ok], [ok, failed, ok]]
        entries = world.entries("event.deliver")
        assert [(e["outcome"], e.get("reason")) for e in entries] == [ok, failed, ok, dead]
        assert {e["request_id"] for e in entries} == {the_delivery_id(db)}
        with db.connect() as conn:  # a dead letter may be replayed: it keeps the subject
            assert conn.execute(sa.text("SELECT subject FROM events")).scalar() == SUBJECT


def test_event_nobody_subscribes_to_keeps_no_raw_subject(
    database_url: str, tmp_path: Path, event_world: WorldMaker, db: sa.Engine
) -> None:
    with event_world(database_url, tmp_path) as world:
        event_id = world.publish()
        with db.connect() as conn:
            query = "SELECT id, subject, subject_pseudonym FROM events"
            stored = tuple(conn.execute(sa.text(query)).one())
        assert stored == (event_id, None, world.hub.keys.pseudonym(SUBJECT))
