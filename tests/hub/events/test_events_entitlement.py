"""Change events follow the record query's entitlement (decision 0060): a department
is told of a change only while it could query the record. Judged when it subscribes,
when an event is published and again when each delivery is due; a subscription ends
with its department's last grant. Real hubs and adapters on loopback, on SQLite and
PostgreSQL, on the worlds of test_events.py.
"""

import base64
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from onceonly.adapters import OnceonlyError
from onceonly.hub.audit import leaves
from onceonly.hub.db import make_sync_engine

from tests.hub.events.test_events import (  # its worlds are in conftest.py
    ADDRESS,
    CONSUMER,
    FAST_RETRIES,
    SUBJECT,
    EventWorld,
    WorldMaker,
    _point,
    consumer_adapter,
    the_delivery,
)
from tests.hub_testing import CATALOGUE, audit_entries, audit_entry_for, wait_until

PATIENT = {**FAST_RETRIES, "event_max_attempts": 100}
"""Retries every 0.2 s at most: no dead letter while a test waits (20 s)."""
NOWHERE = "http://127.0.0.1:9"  # nothing listens there: a delivery waits, retried
OTHER_PURPOSE = "housing-benefit"


def deliveries(db: sa.Engine) -> int:
    with db.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM event_deliveries")).scalar_one())


@contextmanager
def held(db: sa.Engine) -> Iterator[None]:
    """The world's only delivery, settled after a failed attempt, is not due while the
    block runs (so the deliverer cannot look at it half-way through a change), and is
    due at once after it."""
    hold = sa.text(
        "UPDATE event_deliveries SET next_attempt_at = :at"
        " WHERE attempts > 0 AND lease_token IS NULL AND status = 'pending'"
    )

    def taken() -> bool:  # not while the deliverer holds its lease
        with db.begin() as conn:
            return bool(conn.execute(hold, {"at": datetime(2100, 1, 1, tzinfo=UTC)}).rowcount)

    wait_until(taken, what="the delivery settled after a failed attempt")
    yield
    with db.begin() as conn:
        conn.execute(
            sa.text("UPDATE event_deliveries SET next_attempt_at = :at"),
            {"at": datetime(2000, 1, 1, tzinfo=UTC)},
        )


@contextmanager
def subscribed(event_world: WorldMaker, database_url: str, tmp_path: Path) -> Iterator[EventWorld]:
    """A world whose consumer is subscribed to the address, its adapter listening."""
    with event_world(database_url, tmp_path) as world, consumer_adapter(world, tmp_path) as url:
        _point(world, url)
        world.subscribe()
        yield world


def grant_id(world: EventWorld, purpose: str = "benefit-eligibility") -> str:
    with world.hub.admin() as admin:
        (grant,) = [g for g in admin.list_grants(consumer=CONSUMER) if g["purpose"] == purpose]
    return str(grant["id"])


def grant(world: EventWorld, purpose: str) -> None:
    with world.hub.admin() as admin:
        admin.create_grant(consumer=CONSUMER, item=ADDRESS, purpose=purpose, legal_basis="test")


def revoke(world: EventWorld) -> None:
    with world.hub.admin() as admin:
        admin.revoke_grant(grant_id(world))


def close_to_none(world: EventWorld) -> None:
    document = json.loads((CATALOGUE / "items" / f"{ADDRESS}.json").read_text())
    with world.hub.admin() as admin:
        admin.put_item({**document, "sharing_class": "none"})


def retire(world: EventWorld) -> None:
    with world.hub.admin() as admin:
        admin.retire_item(ADDRESS)


def revoke_and_grant_another_purpose(world: EventWorld) -> None:
    revoke(world)
    grant(world, OTHER_PURPOSE)


def end_by_hand(world: EventWorld) -> None:
    """The grant ended a minute ago, typed in the database's own shell: in sqlite3 as
    ISO 8601 text with a 'T' and 'Z', which SQLite's text comparison sorted after the
    hub's own spelling for the rest of the day (helper-149's F4, the events' side)."""
    engine = make_sync_engine(world.hub.settings.database_url)
    ended = (
        "strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-1 minute')"
        if engine.dialect.name == "sqlite"
        else "now() - interval '1 minute'"
    )
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE grants SET valid_until = {ended}"))
    engine.dispose()


def unsubscribe(world: EventWorld) -> None:
    with world.consumer() as consumer:
        consumer.unsubscribe(ADDRESS)


def move_subscription(db: sa.Engine, seconds: int) -> None:
    """The subscription's time moved on by ``seconds``: as if it had been made later, or
    by a hub process whose clock is ahead of the publishing one's."""
    moved = (
        f"strftime('%Y-%m-%d %H:%M:%f', created_at, '+{seconds} seconds')"
        if db.dialect.name == "sqlite"
        else f"created_at + interval '{seconds} seconds'"
    )
    with db.begin() as conn:
        conn.execute(sa.text(f"UPDATE subscriptions SET created_at = {moved}"))


def unsubscribe_and_subscribe_again(world: EventWorld) -> None:
    """A new subscription, a minute after the event (more than the hub's clock_skew,
    within which it would count as made by then): not to the event before it."""
    unsubscribe(world)
    world.subscribe()
    engine = make_sync_engine(world.hub.settings.database_url)
    move_subscription(engine, 60)
    engine.dispose()


def test_an_item_closed_to_none_is_neither_delivered_nor_subscribed_to(
    database_url: str, tmp_path: Path, event_world: WorldMaker, db: sa.Engine
) -> None:
    with subscribed(event_world, database_url, tmp_path) as world:
        close_to_none(world)
        world.publish()
        assert deliveries(db) == 0  # nobody to tell: the publish made no delivery
        with pytest.raises(OnceonlyError) as refused:
            world.subscribe()
        assert (refused.value.status, refused.value.problem_type) == (409, "item-not-shared")
        entry = audit_entry_for(world.hub, refused.value, action="event.subscribe")
        assert (entry["outcome"], entry["reason"]) == ("refused", "item-not-shared")
        with world.hub.admin() as admin:  # as for record queries: the grant stays
            assert [g["status"] for g in admin.list_grants(consumer=CONSUMER)] == ["active"]
        assert world.received == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (close_to_none, "item-not-shared"),
        (retire, "item-retired"),
        (revoke, "no-grant"),
        (revoke_and_grant_another_purpose, "no-grant"),  # a break since the event
        (end_by_hand, "no-grant"),
        (unsubscribe, "not-subscribed"),  # "stop telling me": events queued before too
        (unsubscribe_and_subscribe_again, "not-subscribed"),
    ],
)
def test_a_pending_delivery_the_subscriber_is_no_longer_entitled_to_is_cancelled(
    database_url: str,
    tmp_path: Path,
    event_world: WorldMaker,
    db: sa.Engine,
    change: Callable[[EventWorld], None],
    reason: str,
) -> None:
    with event_world(database_url, tmp_path, **PATIENT) as world:
        _point(world, NOWHERE)  # the subscriber is down: the delivery waits
        world.subscribe()
        event_id = world.publish()
        with consumer_adapter(world, tmp_path) as url:
            with held(db):
                change(world)
                _point(world, url)  # the subscriber is back
            wait_until(lambda: the_delivery(db)[0] != "pending", what="the delivery settled")
        assert world.received == []
        assert the_delivery(db)[0] == "cancelled"
        last = world.entries("event.deliver")[-1]
        assert (last["event"], last["outcome"], last["reason"]) == (event_id, "refused", reason)
        with db.connect() as conn:  # nothing left to send: the raw subject is gone
            assert conn.execute(sa.text("SELECT subject FROM events")).scalar() is None
        refused_entry_names_no_subject(world, event_id)


def test_an_event_published_by_a_clock_behind_the_subscriptions_is_delivered(
    database_url: str, tmp_path: Path, event_world: WorldMaker, db: sa.Engine
) -> None:
    """The subscription's time is one hub process's clock, the event's another's: an
    event published just after the subscription, by a replica whose clock is a few
    seconds behind (within the hub's clock_skew), is the subscriber's. Before, it was
    cancelled unsent, ``not-subscribed``: lost (a hostile review)."""
    with subscribed(event_world, database_url, tmp_path) as world:
        assert world.hub.settings.clock_skew == 10
        move_subscription(db, 5)  # the subscribing process's clock, 5 s ahead
        world.publish()
        wait_until(lambda: the_delivery(db)[0] != "pending", what="the delivery settled")
        assert the_delivery(db)[0] == "delivered"
        assert len(world.received) == 1


def refused_entry_names_no_subject(world: EventWorld, event_id: str) -> None:
    """The subscriber reads its refused delivery's entry, which commits to the subject's
    pseudonym without naming it (decision 0069); the attempts before, made while it was
    entitled, name it; the auditors' search by subject finds them all."""
    pseudonym = world.hub.keys.pseudonym(SUBJECT)
    found = audit_entries(world.hub, action="event.deliver")
    *attempts, refused = [e for e in found if e["entry"]["event"] == event_id]
    assert attempts
    assert all(e["entry"]["subject"] == pseudonym for e in attempts)
    with world.consumer() as subscriber:
        shown = subscriber.audit_entry(refused["index"])
    assert shown["entry"]["outcome"] == "refused"
    assert "subject" not in shown["entry"]
    assert pseudonym.encode() not in base64.b64decode(shown["leaf"])
    assert leaves.commits_to(shown["entry"], pseudonym)
    with world.hub.admin() as admin:
        searched = admin.audit_entries(action="event.deliver", subject=SUBJECT)["entries"]
    assert refused["index"] in {e["index"] for e in searched}


def test_a_subscription_ends_with_its_departments_last_grant(
    database_url: str, tmp_path: Path, event_world: WorldMaker, db: sa.Engine
) -> None:
    with subscribed(event_world, database_url, tmp_path) as world:
        revoke(world)
        grant(world, OTHER_PURPOSE)  # a later grant, for another purpose
        world.publish()
        assert deliveries(db) == 0  # it does not bring the subscription back
        world.subscribe()  # subscribing again does, under the new grant
        event_id = world.publish()
        wait_until(lambda: len(world.received) == 1)
        assert (world.received[0].event_id, world.received[0].subject) == (event_id, SUBJECT)


def test_a_subscription_lasts_while_its_grants_follow_one_another(
    database_url: str, tmp_path: Path, event_world: WorldMaker
) -> None:
    """A renewal: the new grant is made before the old one ends, so there is no break."""
    with subscribed(event_world, database_url, tmp_path) as world:
        grant(world, OTHER_PURPOSE)
        revoke(world)
        event_id = world.publish()
        wait_until(lambda: len(world.received) == 1)
        assert world.received[0].event_id == event_id


def test_a_retired_item_takes_no_subscription(
    database_url: str, tmp_path: Path, event_world: WorldMaker
) -> None:
    with event_world(database_url, tmp_path) as world:
        retire(world)
        with pytest.raises(OnceonlyError) as retired:
            world.subscribe()
        assert (retired.value.status, retired.value.problem_type) == (410, "item-retired")


def test_a_replay_is_found_by_item_and_subject_like_the_events_other_entries(
    database_url: str, tmp_path: Path, event_world: WorldMaker
) -> None:
    with event_world(database_url, tmp_path, **FAST_RETRIES, event_max_attempts=2) as world:
        _point(world, NOWHERE)
        world.subscribe()
        event_id = world.publish()
        with world.hub.admin() as admin:
            wait_until(lambda: len(admin.dead_letters()) == 1)
            (dead,) = admin.dead_letters()
            admin.replay_delivery(dead["id"])
            found = admin.audit_entries(action="event.replay", item=ADDRESS, subject=SUBJECT)
        (entry,) = [e["entry"] for e in found["entries"]]
        assert (entry["event"], entry["target"], entry["item"]) == (event_id, CONSUMER, ADDRESS)
        assert entry["subject"] == world.hub.keys.pseudonym(SUBJECT)
        assert SUBJECT not in json.dumps(entry)


def test_a_dead_letter_replayed_after_its_subscriber_unsubscribed_is_cancelled(
    database_url: str, tmp_path: Path, event_world: WorldMaker, db: sa.Engine
) -> None:
    settings = {**FAST_RETRIES, "event_max_attempts": 2}
    with event_world(database_url, tmp_path, **settings) as world:
        _point(world, NOWHERE)
        world.subscribe()
        event_id = world.publish()
        wait_until(lambda: the_delivery(db)[0] == "dead", what="a dead letter")
        unsubscribe(world)
        with consumer_adapter(world, tmp_path) as url, world.hub.admin() as admin:
            _point(world, url)  # the subscriber is back, but said stop
            (dead,) = admin.dead_letters()
            admin.replay_delivery(dead["id"])
            wait_until(lambda: the_delivery(db)[0] == "cancelled", what="the replay judged")
        assert world.received == []
        last = world.entries("event.deliver")[-1]
        assert (last["event"], last["outcome"], last["reason"]) == (
            event_id,
            "refused",
            "not-subscribed",
        )
        with db.connect() as conn:  # cancelled: nothing left to send, the subject is gone
            assert conn.execute(sa.text("SELECT subject FROM events")).scalar() is None
