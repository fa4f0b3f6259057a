"""Dropping ``x-personal`` in a new version does not let one steward open the item alone
(decision 0059): for the two-person rule an item is personal when any of its versions
marks a field. Over real HTTP on SQLite and PostgreSQL, with the world of
test_registry_two_person.
"""

import copy
from typing import Any

import httpx

from onceonly.hub.registry.service import ever_personal

from tests.hub.registry.test_registry_two_person import (
    CHANGES,
    decide,
    hub,
    item,
    new_item,
    people,
    put,
)
from tests.hub_testing import RunningHub

__all__ = ["hub", "people"]  # the module-scoped world of test_registry_two_person

Json = dict[str, Any]


def unmarked(schema: Json) -> Json:
    """``schema`` with every ``x-personal`` left out (an annotation: compatible in any mode)."""
    if isinstance(schema, dict):
        return {k: unmarked(v) for k, v in schema.items() if k != "x-personal"}
    if isinstance(schema, list):
        return [unmarked(v) for v in schema]
    return schema


def add_unmarked_version(hub: RunningHub, document: Json, headers: dict[str, str]) -> Json:
    answer = httpx.post(
        f"{hub.url}/v1/admin/items/{document['id']}/versions",
        json={"schema": unmarked(document["schema"]), "examples": document.get("examples", [])},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["personal_fields"] == []
    return {**document, "schema": unmarked(document["schema"])}


def test_dropping_the_personal_marks_does_not_bypass_a_waiting_opening(
    hub: RunningHub, people: dict[str, dict[str, str]]
) -> None:
    """The reviewer's sequence: ask to open (202), add a version without the marks, ask
    again: the same change still waits, and the item stays conditional."""
    document = new_item(hub, people)
    opening = {**document, "sharing_class": "unconditional"}
    asked = put(hub, opening, people["steward"])
    assert asked.status_code == 202, asked.text
    later = add_unmarked_version(hub, document, people["steward"])
    again = put(hub, {**later, "sharing_class": "unconditional"}, people["steward"])
    assert again.status_code == 202, again.text
    assert again.json()["id"] == asked.json()["id"]
    assert item(hub, document["id"])["sharing_class"] == "conditional"
    waiting = httpx.get(f"{hub.url}{CHANGES}/{asked.json()['id']}", headers=people["admin"])
    assert waiting.json()["status"] == "pending"
    approved = decide(hub, asked.json()["id"], "approve", people["admin"])
    assert approved.status_code == 200, approved.text
    assert item(hub, document["id"])["sharing_class"] == "unconditional"


def test_an_item_once_personal_waits_for_a_second_person_to_open(
    hub: RunningHub, people: dict[str, dict[str, str]]
) -> None:
    """Unmarked first, opened second: still 202, for every step up."""
    for start, target in (("none", "conditional"), ("conditional", "unconditional")):
        document = new_item(hub, people, sharing_class=start)
        later = add_unmarked_version(hub, document, people["steward"])
        asked = put(hub, {**later, "sharing_class": target}, people["steward"])
        assert asked.status_code == 202, asked.text
        assert asked.json()["changes"] == {"sharing_class": {"from": start, "to": target}}
        assert item(hub, document["id"])["sharing_class"] == start


def test_an_item_never_marked_personal_opens_in_one_step(
    hub: RunningHub, people: dict[str, dict[str, str]]
) -> None:
    document = new_item(hub, people)
    never = {**unmarked(copy.deepcopy(document)), "id": document["id"] + "-n"}
    assert put(hub, never, people["steward"]).status_code == 200
    opened = put(hub, {**never, "sharing_class": "unconditional"}, people["steward"])
    assert opened.status_code == 200, opened.text
    assert item(hub, never["id"])["sharing_class"] == "unconditional"


class _Version:
    def __init__(self, personal_fields: list[str]) -> None:
        self.personal_fields = personal_fields


def test_ever_personal_looks_at_every_version() -> None:
    versions = [_Version(["personal_code"]), _Version([])]
    assert ever_personal(versions)  # type: ignore[arg-type]
    assert not ever_personal([_Version([]), _Version([])])  # type: ignore[arg-type]
