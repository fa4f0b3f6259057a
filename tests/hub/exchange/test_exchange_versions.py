"""Reading a record in an earlier version of its item, and deprecated items."""

import copy
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from onceonly.adapters import NotFound

from tests.hub.exchange_world import (
    ADDRESS,
    ADDRESS_RECORD,
    CONSUMER,
    PURPOSE,
    SUBJECT,
    World,
    exchange_world,
    module_exchange_world,
)
from tests.hub_testing import DATABASES, audit_entry_for, load_item

MOVED_IN = {**ADDRESS_RECORD, "apartment": "12"}


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """A world with a second version of the address, shared by the tests that leave the
    item as it is (each grants a purpose of its own)."""
    with module_exchange_world(request, tmp_path_factory) as built:
        yield with_second_version(built)


@pytest.fixture
def fresh_world(database_url: str, tmp_path: Path) -> Iterator[World]:
    """The same, of its own: for a test that deprecates the item."""
    with exchange_world(database_url=database_url, tmp_path=tmp_path) as built:
        yield with_second_version(built)


def with_second_version(built: World) -> World:
    """Version 2 of the address adds an apartment; the owner's record has one."""
    schema = copy.deepcopy(load_item(ADDRESS)["schema"])
    schema["properties"]["apartment"] = {
        "type": "string",
        "maxLength": 10,
        "title": "Apartment",
        "description": "Apartment number.",
        "x-personal": True,
    }
    with built.hub.admin() as admin:
        admin.add_version(ADDRESS, {"schema": schema, "examples": [MOVED_IN]})
    built.owner_store.put(ADDRESS, SUBJECT, MOVED_IN, announce=False)
    return built


def test_a_new_version_does_not_widen_a_grant_made_before_it(world: World) -> None:
    with world.client() as client:
        result = client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
    assert result.version == 2
    assert "apartment" not in result.record
    assert not result.deprecated


def test_a_grant_made_after_the_new_version_covers_its_fields(world: World) -> None:
    with world.hub.admin() as admin:
        admin.create_grant(
            consumer=CONSUMER, item=ADDRESS, purpose="housing-benefit", legal_basis="test"
        )
    with world.client() as client:
        result = client.fetch(ADDRESS, SUBJECT, purpose="housing-benefit")
    assert (result.version, result.record.get("apartment")) == (2, "12")


def test_an_earlier_version_drops_what_it_does_not_define(world: World) -> None:
    with world.hub.admin() as admin:
        admin.create_grant(
            consumer=CONSUMER, item=ADDRESS, purpose="child-benefit", legal_basis="test"
        )
    with world.client() as client:
        result = client.fetch(ADDRESS, SUBJECT, purpose="child-benefit", version=1)
    assert result.version == 1
    assert result.record == ADDRESS_RECORD
    entry = audit_entry_for(world.hub, result, action="record.query")
    assert (entry["version"], "apartment" in entry["fields"]) == (1, False)


def test_a_version_that_does_not_exist_is_404(world: World) -> None:
    with world.client() as client, pytest.raises(NotFound) as refused:
        client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE, version=7)
    assert refused.value.problem_type == "unknown-version"


def test_a_deprecated_item_is_served_with_a_deprecation_header(fresh_world: World) -> None:
    world = fresh_world
    with world.hub.admin() as admin:
        admin.deprecate_item(ADDRESS)
    with world.client() as client:
        result = client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
    assert result.deprecated


def test_the_deprecation_header_is_an_rfc9745_date(fresh_world: World) -> None:
    world = fresh_world
    before = int(time.time())
    with world.hub.admin() as admin:
        admin.deprecate_item(ADDRESS)
    with world.client() as client:
        deprecation = client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE).deprecation
    assert deprecation is not None
    assert deprecation.startswith("@")
    assert before <= int(deprecation[1:]) <= int(time.time())
