"""Two people for dangerous registry changes: opening the sharing class of an item with
personal fields, or loosening its compatibility mode, waits for an administrator who
did not ask for it; tightening changes take one step. The rules as tables; the routes
over real HTTP on SQLite and PostgreSQL, each step audited.
"""

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from onceonly.hub import cli
from onceonly.hub.registry.compat import MODE_CHECKS, loosens_compatibility

from tests.hub_testing import (
    DATABASES,
    RunningHub,
    audit_entry_for,
    catalogue_hub,
    load_item,
    problem_type,
    signed_in,
    steward,
)

Json = dict[str, Any]
CHANGES = "/v1/admin/registry-changes"

# --- the rules -------------------------------------------------------------------------

TIGHTER_OR_EQUAL = [("NONE", mode) for mode in MODE_CHECKS] + [
    ("BACKWARD", "BACKWARD"),
    ("BACKWARD", "BACKWARD_TRANSITIVE"),
    ("BACKWARD", "FULL"),
    ("BACKWARD", "FULL_TRANSITIVE"),
    ("FORWARD", "FULL"),
    ("FORWARD", "FORWARD_TRANSITIVE"),
    ("FULL", "FULL_TRANSITIVE"),
    ("BACKWARD_TRANSITIVE", "FULL_TRANSITIVE"),
    ("FULL_TRANSITIVE", "FULL_TRANSITIVE"),
]
LOOSER = [
    ("FULL", "BACKWARD"),
    ("BACKWARD", "NONE"),
    ("FULL", "NONE"),
    ("BACKWARD", "FORWARD"),
    ("FORWARD", "BACKWARD"),
    ("FULL_TRANSITIVE", "FULL"),
    ("BACKWARD_TRANSITIVE", "BACKWARD"),
    ("BACKWARD_TRANSITIVE", "FULL"),
    ("FULL_TRANSITIVE", "BACKWARD_TRANSITIVE"),
    ("FORWARD_TRANSITIVE", "NONE"),
]


@pytest.mark.parametrize(("old", "new"), TIGHTER_OR_EQUAL)
def test_a_mode_that_checks_at_least_as_much_is_not_a_loosening(old: str, new: str) -> None:
    assert not loosens_compatibility(old, new)


@pytest.mark.parametrize(("old", "new"), LOOSER)
def test_a_mode_that_drops_a_check_is_a_loosening(old: str, new: str) -> None:
    assert loosens_compatibility(old, new)


def test_every_pair_of_modes_is_classified() -> None:
    """Each pair is a loosening or not; none is both, and the tables agree."""
    for old in MODE_CHECKS:
        for new in MODE_CHECKS:
            if (old, new) in LOOSER:
                assert (old, new) not in TIGHTER_OR_EQUAL
    assert all(not loosens_compatibility(mode, mode) for mode in MODE_CHECKS)


# --- over HTTP ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=DATABASES)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    with catalogue_hub(request, tmp_path_factory) as hub:
        yield hub


@pytest.fixture(scope="module")
def people(hub: RunningHub) -> dict[str, dict[str, str]]:
    return {
        "steward": signed_in(hub, "cecilia", steward("civil-registry")),
        "admin": signed_in(hub, "ada", {"role": "administrator"}),
        "auditor": signed_in(hub, "audrey", {"role": "auditor"}),
    }


def new_item(hub: RunningHub, people: dict[str, dict[str, str]], **members: Any) -> Json:
    """An item with personal fields (a copy of person.death), registered as ``members``
    say (opened to unconditional with an administrator's approval, as it must be)."""
    document = copy.deepcopy(load_item("person.death"))
    document["id"] = f"test.item-{uuid.uuid4().hex[:8]}"
    document.update(members)
    registered = put(hub, document, people["steward"])
    if registered.status_code == 202:
        approved = decide(hub, registered.json()["id"], "approve", people["admin"])
        assert approved.status_code == 200, approved.text
    assert registered.status_code in (200, 202), registered.text
    assert item(hub, document["id"])["sharing_class"] == document["sharing_class"]
    return document


def put(hub: RunningHub, document: Json, headers: dict[str, str]) -> httpx.Response:
    return httpx.put(f"{hub.url}/v1/admin/items/{document['id']}", json=document, headers=headers)


def item(hub: RunningHub, item_id: str) -> Json:
    found: Json = httpx.get(f"{hub.url}/v1/items/{item_id}").json()
    return found


def decide(
    hub: RunningHub, change_id: str, verb: str, headers: dict[str, str], body: Json | None = None
) -> httpx.Response:
    return httpx.post(f"{hub.url}{CHANGES}/{change_id}/{verb}", json=body or {}, headers=headers)


def test_one_steward_cannot_make_a_personal_item_unconditional_alone(
    hub: RunningHub, people: dict[str, dict[str, str]]
) -> None:
    document = new_item(hub, people)
    asked = put(
        hub, {**document, "sharing_class": "unconditional", "title": "Deaths"}, people["steward"]
    )
    assert asked.status_code == 202, asked.text
    change = asked.json()
    assert asked.headers["location"] == f"{CHANGES}/{change['id']}"
    assert change["changes"] == {"sharing_class": {"from": "conditional", "to": "unconditional"}}
    assert (change["status"], change["requested_by"]) == ("pending", "cecilia")
    now = item(hub, document["id"])
    assert (now["sharing_class"], now["title"]) == ("conditional", "Deaths")  # the rest applies
    entry = audit_entry_for(hub, asked, action="registry.item.put")
    assert (entry["outcome"], entry["person"], entry["target"]) == ("ok", "cecilia", change["id"])
    assert entry["fields"] == ["sharing_class"]

    approved = decide(hub, change["id"], "approve", people["admin"], {"reason": "law §5"})
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["decided_by"]) == ("approved", "ada")
    assert item(hub, document["id"])["sharing_class"] == "unconditional"
    entry = audit_entry_for(hub, approved, action="registry.change.approve")
    assert (entry["outcome"], entry["person"], entry["target"]) == ("ok", "ada", change["id"])
    assert (entry["item"], entry["department"], entry["reason"]) == (
        document["id"],
        "civil-registry",
        "law §5",
    )
    again = decide(hub, change["id"], "approve", people["admin"])
    assert (again.status_code, problem_type(again)) == (409, "registry-change-not-pending")
    assert (again.json()["status"], again.json()["state"]) == (409, "approved")


@pytest.mark.parametrize(
    ("start", "change"),
    [
        ({"sharing_class": "none"}, {"sharing_class": "conditional"}),
        ({"sharing_class": "none"}, {"sharing_class": "unconditional"}),
        ({"compatibility": "FULL"}, {"compatibility": "BACKWARD"}),
        ({"compatibility": "BACKWARD"}, {"compatibility": "NONE"}),
        ({"compatibility": "FULL_TRANSITIVE"}, {"compatibility": "FULL"}),
    ],
)
def test_opening_or_loosening_waits_for_an_administrator(
    hub: RunningHub, people: dict[str, dict[str, str]], start: Json, change: Json
) -> None:
    document = new_item(hub, people, **start)
    asked = put(hub, {**document, **change}, people["steward"])
    assert asked.status_code == 202, asked.text
    ((member, value),) = change.items()
    assert item(hub, document["id"])[member] == start[member]
    refused = decide(hub, asked.json()["id"], "refuse", people["admin"], {"reason": "no"})
    assert refused.status_code == 200, refused.text
    assert refused.json()["status"] == "refused"
    assert item(hub, document["id"])[member] == start[member]
    assert audit_entry_for(hub, refused, action="registry.change.refuse")["reason"] == "no"
    assert value != start[member]


@pytest.mark.parametrize(
    ("start", "change"),
    [
        ({"sharing_class": "unconditional"}, {"sharing_class": "conditional"}),
        ({"sharing_class": "conditional"}, {"sharing_class": "none"}),
        ({"compatibility": "NONE"}, {"compatibility": "BACKWARD"}),
        ({"compatibility": "BACKWARD"}, {"compatibility": "FULL_TRANSITIVE"}),
        ({}, {"title": "Another title", "tags": ["x"]}),
    ],
)
def test_tightening_changes_take_one_step(
    hub: RunningHub, people: dict[str, dict[str, str]], start: Json, change: Json
) -> None:
    document = new_item(hub, people, **start)  # registering is one step, whatever it says
    answered = put(hub, {**document, **change}, people["steward"])
    assert answered.status_code == 200, answered.text
    for member, value in change.items():
        assert item(hub, document["id"])[member] == value


def test_opening_an_item_without_personal_fields_takes_one_step(
    hub: RunningHub, people: dict[str, dict[str, str]]
) -> None:
    document = copy.deepcopy(load_item("business.registration"))
    document.update(id=f"test.open-{uuid.uuid4().hex[:8]}", owner="civil-registry")
    document["sharing_class"] = "none"
    assert put(hub, document, people["steward"]).status_code == 200
    answered = put(hub, {**document, "sharing_class": "unconditional"}, people["steward"])
    assert answered.status_code == 200, answered.text
    assert item(hub, document["id"])["sharing_class"] == "unconditional"


def test_a_new_personal_item_registered_unconditional_starts_conditional_and_waits(
    hub: RunningHub, people: dict[str, dict[str, str]]
) -> None:
    document = copy.deepcopy(load_item("person.death"))
    document.update(id=f"test.new-{uuid.uuid4().hex[:8]}", sharing_class="unconditional")
    asked = put(hub, document, people["steward"])
    assert asked.status_code == 202, asked.text
    assert asked.json()["changes"] == {
        "sharing_class": {"from": "conditional", "to": "unconditional"}
    }
    assert item(hub, document["id"])["sharing_class"] == "conditional"


def test_a_version_cannot_add_personal_fields_to_an_unconditional_item(
    hub: RunningHub, people: dict[str, dict[str, str]]
) -> None:
    document = copy.deepcopy(load_item("business.registration"))
    document.update(id=f"test.open-{uuid.uuid4().hex[:8]}", owner="civil-registry")
    document.update(sharing_class="unconditional", compatibility="NONE")
    assert put(hub, document, people["steward"]).status_code == 200
    schema = copy.deepcopy(document["schema"])
    schema["properties"]["contact_person"] = {"type": "string", "x-personal": True}
    url = f"{hub.url}/v1/admin/items/{document['id']}/versions"
    refused = httpx.post(url, json={"schema": schema}, headers=people["steward"])
    assert (refused.status_code, problem_type(refused)) == (409, "registry-conflict")
    assert "contact_person" in refused.json()["detail"]
    tightened = put(hub, {**document, "sharing_class": "conditional"}, people["steward"])
    assert tightened.status_code == 200, tightened.text
    added = httpx.post(url, json={"schema": schema}, headers=people["steward"])
    assert added.status_code in (200, 201), added.text
    assert item(hub, document["id"])["personal_fields"] == ["contact_person"]


def test_who_asked_does_not_approve_even_as_an_administrator(
    hub: RunningHub, people: dict[str, dict[str, str]]
) -> None:
    """Roles are kept apart, but they change: the steward who asked, made an
    administrator later, still does not decide their own change."""
    document = new_item(hub, people)
    asked = put(
        hub, {**document, "compatibility": "NONE"}, signed_in(hub, "bea", steward("civil-registry"))
    )
    assert asked.status_code == 202, asked.text
    change_id = asked.json()["id"]
    bea = signed_in(hub, "bea", {"role": "administrator"})
    own = decide(hub, change_id, "approve", bea)
    assert (own.status_code, problem_type(own)) == (403, "not-second-person")
    assert audit_entry_for(hub, own, action="registry.change.approve")["reason"] == (
        "not-second-person"
    )
    refused_too = decide(hub, change_id, "refuse", bea, {"reason": "mine"})
    assert (refused_too.status_code, problem_type(refused_too)) == (403, "not-second-person")
    emergency = {"Authorization": f"Bearer {hub.keys.admin_token}"}
    for headers, slug in (
        (people["steward"], "forbidden"),
        (people["auditor"], "forbidden"),
        (emergency, "forbidden"),  # a decision for a person, not a token
    ):
        response = decide(hub, change_id, "approve", headers)
        assert (response.status_code, problem_type(response)) == (403, slug)
    assert item(hub, document["id"])["compatibility"] == "BACKWARD"
    assert decide(hub, change_id, "approve", people["admin"]).status_code == 200
    assert item(hub, document["id"])["compatibility"] == "NONE"


def test_the_same_change_asked_again_is_the_one_waiting_another_is_refused(
    hub: RunningHub, people: dict[str, dict[str, str]]
) -> None:
    document = new_item(hub, people)
    opened = {**document, "sharing_class": "unconditional"}
    first = put(hub, opened, people["steward"])
    again = put(hub, opened, people["steward"])
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["id"] == first.json()["id"]
    other = put(hub, {**opened, "compatibility": "NONE"}, people["steward"])
    assert (other.status_code, problem_type(other)) == (409, "registry-conflict")
    assert first.json()["id"] in other.json()["detail"]
    listed = httpx.get(
        f"{hub.url}{CHANGES}", params={"item": document["id"]}, headers=people["auditor"]
    )
    assert [c["id"] for c in listed.json()["changes"]] == [first.json()["id"]]
    pending = httpx.get(
        f"{hub.url}{CHANGES}", params={"status": "pending"}, headers=people["steward"]
    )
    assert first.json()["id"] in [c["id"] for c in pending.json()["changes"]]
    shown = httpx.get(f"{hub.url}{CHANGES}/{first.json()['id']}", headers=people["admin"])
    assert shown.json()["owner"] == "civil-registry"


def test_a_change_overtaken_by_a_later_one_is_stale(
    hub: RunningHub, people: dict[str, dict[str, str]]
) -> None:
    document = new_item(hub, people)
    asked = put(hub, {**document, "sharing_class": "unconditional"}, people["steward"])
    closed = put(hub, {**document, "sharing_class": "none"}, people["steward"])  # tightening
    assert closed.status_code == 200, closed.text
    stale = decide(hub, asked.json()["id"], "approve", people["admin"])
    assert (stale.status_code, problem_type(stale)) == (409, "registry-conflict")
    assert item(hub, document["id"])["sharing_class"] == "none"
    assert (
        decide(hub, asked.json()["id"], "refuse", people["admin"], {"reason": "stale"}).status_code
        == 200
    )


def test_reading_changes_needs_a_role(hub: RunningHub) -> None:
    nobody = signed_in(hub, "nora")
    response = httpx.get(f"{hub.url}{CHANGES}", headers=nobody)
    assert (response.status_code, problem_type(response)) == (403, "forbidden")
    missing = httpx.get(
        f"{hub.url}{CHANGES}/{'0' * 32}", headers=signed_in(hub, "ari", {"role": "auditor"})
    )
    assert (missing.status_code, problem_type(missing)) == (404, "registry-change-not-found")


# --- the command line -------------------------------------------------------------------


@pytest.fixture
def onceonly(hub: RunningHub, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``onceonly`` against the module's hub, as the person whose headers are given."""
    monkeypatch.setenv("ONCEONLY_HUB_URL", hub.url)

    def run(headers: dict[str, str], *argv: str) -> int:
        monkeypatch.setenv("ONCEONLY_TOKEN", headers["Authorization"].removeprefix("Bearer "))
        return cli.main(["registry", *argv])

    return run


def test_cli_lists_approves_and_refuses_changes(
    hub: RunningHub,
    people: dict[str, dict[str, str]],
    onceonly: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    document = new_item(hub, people)
    change_id = put(hub, {**document, "compatibility": "NONE"}, people["steward"]).json()["id"]
    admin = people["admin"]
    assert onceonly(admin, "changes", "--status", "pending", "--item", document["id"]) == 0
    assert [c["id"] for c in json.loads(capsys.readouterr().out)["changes"]] == [change_id]
    assert onceonly(people["steward"], "approve", change_id) == 1
    assert capsys.readouterr().err.startswith("refused: HTTP 403")
    assert onceonly(admin, "approve", change_id, "--reason", "agreed") == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["status"], shown["decided_by"], shown["reason"]) == ("approved", "ada", "agreed")
    assert onceonly(admin, "refuse", change_id, "--reason", "late") == 1
    assert "registry change" in capsys.readouterr().err
    assert onceonly(people["auditor"], "show", change_id) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "approved"
