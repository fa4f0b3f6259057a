"""The citizen view: a portal sees who read a person's records, when and why."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from joserfc.jwk import ECKey

from onceonly.adapters import AccessDenied, HubClient, OnceonlyError, public_jwks

from tests.hub.exchange_world import (
    ADDRESS,
    ADDRESS_RECORD,
    CONSUMER,
    PURPOSE,
    SUBJECT,
    World,
    exchange_world,
)

PORTAL = "citizen-portal"


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[World]:
    settings = {"citizen_portal_clients": [PORTAL]}
    with exchange_world(database_url=database_url, tmp_path=tmp_path, **settings) as built:
        yield built


def _portal(world: World) -> HubClient:
    key = ECKey.generate_key("P-256", auto_kid=True)
    with world.hub.admin() as admin:
        admin.put_department("portal", name="State portal")
        admin.put_client(PORTAL, department="portal", jwks=public_jwks(key))
    return HubClient(world.hub.url, client_id=PORTAL, key=key, retries=0)


def test_portal_sees_which_department_read_what_and_why(world: World) -> None:
    world.owner_store.put(ADDRESS, "49403136515", ADDRESS_RECORD)
    with world.client() as client:
        fetched = client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
        client.fetch(ADDRESS, "49403136515", purpose=PURPOSE)  # someone else: not shown
    with _portal(world) as portal:
        (access,) = portal.citizen_access_log(SUBJECT)
    assert (access["department"], access["item"], access["purpose"]) == (CONSUMER, ADDRESS, PURPOSE)
    assert access["item_title"] == "Residential address"
    fields = {"index", "time", "department", "department_name", "item", "item_title", "purpose"}
    assert set(access) == fields
    assert access["index"] == fetched.receipt.index  # its inclusion proof is public


def test_every_time_the_portal_sees_carries_its_offset(world: World) -> None:
    """RFC 3339 times: on SQLite, which keeps times without an offset, too."""
    with world.client() as client:
        client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
    with _portal(world) as portal:
        (access,) = portal.citizen_access_log(SUBJECT)
    shown = datetime.fromisoformat(access["time"])
    assert shown.utcoffset() == timedelta(0), access["time"]
    assert abs(datetime.now(UTC) - shown) < timedelta(minutes=5)


def test_refused_queries_are_not_accesses(world: World) -> None:
    with world.client() as client, pytest.raises(AccessDenied):
        client.fetch(ADDRESS, SUBJECT, purpose="marketing")
    with _portal(world) as portal:
        assert portal.citizen_access_log(SUBJECT) == []


def test_only_configured_portals_may_ask_and_every_question_is_audited(world: World) -> None:
    with world.client() as client:
        client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
        with pytest.raises(AccessDenied) as refused:
            client.citizen_access_log(SUBJECT)
    assert refused.value.problem_type == "not-citizen-portal"
    with _portal(world) as portal:
        assert len(portal.citizen_access_log(SUBJECT)) == 1
    with world.hub.admin() as admin:
        entries = [e["entry"] for e in admin.audit_entries(action="citizen.query")["entries"]]
    assert [e["outcome"] for e in entries] == ["refused", "ok"]
    assert all(SUBJECT not in str(e) for e in entries)


@pytest.mark.parametrize("limit", [True, "1", 1.0])
def test_a_limit_that_is_no_json_integer_is_refused(world: World, limit: object) -> None:
    with _portal(world) as portal, pytest.raises(OnceonlyError) as refused:
        portal.citizen_access_log(SUBJECT, limit=limit)  # type: ignore[arg-type]
    assert (refused.value.status, refused.value.problem_type) == (400, "invalid-request")
