"""An adapter URL the hub cannot call (a port that is no number, a control character:
httpx raises InvalidURL, which is no HTTPError) is refused when it is registered, and
one stored before that rule is never called: a delivery to it fails without an ``ok``
entry and ends as a dead letter, and a record query of its owner's item answers
``503 owner-unavailable``, not 500 (the record query's path, beside the events': both
join their paths under the URL, kit.base_urls). Real hubs on loopback, SQLite and
PostgreSQL."""

from pathlib import Path

import pytest
import sqlalchemy as sa

from onceonly.adapters import OnceonlyError

from tests.hub.events.test_events import (  # its worlds are in conftest.py
    ADDRESS,
    CONSUMER,
    FAST_RETRIES,
    OWNER,
    SUBJECT,
    WorldMaker,
    the_delivery,
)
from tests.hub.registry.test_registry_adapter_urls import put_department, stored_url
from tests.hub_testing import audit_entry_for, problem_type, wait_until

UNCALLABLE = [
    "http://127.0.0.1:abc/",  # the reviewer's
    "http://127.0.0.1:8080/adapter\x01",
    "http://127.0.0.1:8080/adapter\n",
]


def _store(db: sa.Engine, department: str, url: str) -> None:
    """``url`` as ``department``'s adapter URL, as a hub before the rule let it be."""
    with db.begin() as conn:
        conn.execute(
            sa.text("UPDATE departments SET adapter_url = :url WHERE id = :id"),
            {"url": url, "id": department},
        )


def test_registering_an_adapter_url_httpx_cannot_call_is_refused(
    database_url: str, tmp_path: Path, event_world: WorldMaker
) -> None:
    kept = "http://127.0.0.1:8080/adapter"
    with event_world(database_url, tmp_path) as world:
        hub = world.hub
        assert put_department(hub, CONSUMER, kept).status_code == 200
        for url in UNCALLABLE:
            refused = put_department(hub, CONSUMER, url)
            assert refused.status_code == 400, refused.text
            assert problem_type(refused) == "invalid-request"
            assert "adapter_url" in refused.json()["detail"]
            entry = audit_entry_for(hub, refused, action="registry.department.put")
            assert entry["outcome"] == "refused"
        assert stored_url(hub, CONSUMER) == kept


@pytest.mark.parametrize("url", UNCALLABLE)
def test_a_delivery_to_a_stored_url_that_cannot_be_called_fails_into_a_dead_letter(
    database_url: str, tmp_path: Path, event_world: WorldMaker, db: sa.Engine, url: str
) -> None:
    settings = {**FAST_RETRIES, "event_max_attempts": 3}
    with event_world(database_url, tmp_path, **settings) as world:
        _store(db, CONSUMER, url)
        world.subscribe()
        world.publish()
        wait_until(lambda: the_delivery(db)[0] == "dead", what="a dead letter")
        _, attempts, last_error = the_delivery(db)
        assert attempts == 3
        assert "adapter_url is refused" in str(last_error)
        entries = world.entries("event.deliver")  # no call was made, so no "ok" entry
        assert [(e["outcome"], e["reason"]) for e in entries] == [
            ("failed", "delivery-failed"),
            ("failed", "delivery-failed"),
            ("failed", "dead-letter"),
        ]


def test_a_record_query_to_an_owner_whose_url_cannot_be_called_is_owner_unavailable(
    database_url: str, tmp_path: Path, event_world: WorldMaker, db: sa.Engine
) -> None:
    with event_world(database_url, tmp_path) as world:
        _store(db, OWNER, UNCALLABLE[0])
        with world.consumer() as consumer, pytest.raises(OnceonlyError) as refused:
            consumer.fetch(ADDRESS, SUBJECT, purpose="benefit-eligibility")
        assert (refused.value.status, refused.value.problem_type) == (503, "owner-unavailable")
        entry = audit_entry_for(world.hub, refused.value, action="record.query")
        assert entry["outcome"] == "failed"
