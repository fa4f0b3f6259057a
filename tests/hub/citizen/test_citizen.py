"""The citizen view: a portal sees who read a person's records, when and why."""

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from joserfc.jwk import ECKey

from onceonly.adapters import AccessDenied, HubClient, OnceonlyError, public_jwks

from tests.hub.exchange_world import (
    ADDRESS,
    ADDRESS_RECORD,
    CONSUMER,
    PURPOSE,
    World,
    module_exchange_world,
)
from tests.hub_testing import DATABASES, added_audit_entries

PORTAL = "citizen-portal"
_PEOPLE = itertools.count(1)


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """One world per module and database; each test asks about people of its own."""
    settings = {"citizen_portal_clients": [PORTAL]}
    with module_exchange_world(request, tmp_path_factory, **settings) as built:
        yield built


def person(world: World) -> str:
    """The personal code of someone no other test asks about, with an address on record."""
    code = f"3800108{next(_PEOPLE):04d}"
    world.owner_store.put(ADDRESS, code, ADDRESS_RECORD, announce=False)
    return code


def _portal(world: World) -> HubClient:
    key = ECKey.generate_key("P-256", auto_kid=True)
    with world.hub.admin() as admin:
        admin.put_department("portal", name="State portal")
        admin.put_client(PORTAL, department="portal", jwks=public_jwks(key))
    return HubClient(world.hub.url, client_id=PORTAL, key=key, retries=0)


def test_portal_sees_which_department_read_what_and_why(world: World) -> None:
    subject, someone_else = person(world), person(world)
    with world.client() as client:
        fetched = client.fetch(ADDRESS, subject, purpose=PURPOSE)
        client.fetch(ADDRESS, someone_else, purpose=PURPOSE)  # not shown
    with _portal(world) as portal:
        (access,) = portal.citizen_access_log(subject)
    assert (access["department"], access["item"], access["purpose"]) == (CONSUMER, ADDRESS, PURPOSE)
    assert access["item_title"] == "Residential address"
    fields = {"index", "time", "department", "department_name", "item", "item_title", "purpose"}
    assert set(access) == fields
    assert access["index"] == fetched.receipt.index  # its inclusion proof is public


def test_every_time_the_portal_sees_carries_its_offset(world: World) -> None:
    """RFC 3339 times: on SQLite, which keeps times without an offset, too."""
    subject = person(world)
    with world.client() as client:
        client.fetch(ADDRESS, subject, purpose=PURPOSE)
    with _portal(world) as portal:
        (access,) = portal.citizen_access_log(subject)
    shown = datetime.fromisoformat(access["time"])
    assert shown.utcoffset() == timedelta(0), access["time"]
    assert abs(datetime.now(UTC) - shown) < timedelta(minutes=5)


def test_refused_queries_are_not_accesses(world: World) -> None:
    subject = person(world)
    with world.client() as client, pytest.raises(AccessDenied):
        client.fetch(ADDRESS, subject, purpose="marketing")
    with _portal(world) as portal:
        assert portal.citizen_access_log(subject) == []


def test_only_configured_portals_may_ask_and_every_question_is_audited(world: World) -> None:
    subject = person(world)
    with added_audit_entries(world.hub, action="citizen.query") as entries:
        with world.client() as client:
            client.fetch(ADDRESS, subject, purpose=PURPOSE)
            with pytest.raises(AccessDenied) as refused:
                client.citizen_access_log(subject)
        assert refused.value.problem_type == "not-citizen-portal"
        with _portal(world) as portal:
            assert len(portal.citizen_access_log(subject)) == 1
    assert [e["outcome"] for e in entries] == ["refused", "ok"]
    assert all(subject not in str(e) for e in entries)


@pytest.mark.parametrize("limit", [True, "1", 1.0])
def test_a_limit_that_is_no_json_integer_is_refused(world: World, limit: object) -> None:
    with _portal(world) as portal, pytest.raises(OnceonlyError) as refused:
        portal.citizen_access_log(person(world), limit=limit)  # type: ignore[arg-type]
    assert (refused.value.status, refused.value.problem_type) == (400, "invalid-request")
