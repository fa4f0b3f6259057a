"""Stewards manage only their own department's items; administrators manage departments
and clients, not items; auditors change nothing. Every refusal is audited."""

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.hub_testing import (
    CATALOGUE,
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


@pytest.fixture(scope="module", params=DATABASES)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    with catalogue_hub(request, tmp_path_factory) as hub:
        yield hub


@pytest.fixture(scope="module")
def people(hub: RunningHub) -> dict[str, dict[str, str]]:
    return {
        "civil": signed_in(hub, "cecilia", steward("civil-registry")),
        "tax": signed_in(hub, "tomas", steward("tax")),
        "admin": signed_in(hub, "ada", {"role": "administrator"}),
        "auditor": signed_in(hub, "audrey", {"role": "auditor"}),
    }


def new_item(owner: str) -> Json:
    document = copy.deepcopy(load_item("person.death"))
    document["id"] = f"test.item-{uuid.uuid4().hex[:8]}"
    document["owner"] = owner
    return document


def put(hub: RunningHub, document: Json, headers: dict[str, str]) -> httpx.Response:
    return httpx.put(f"{hub.url}/v1/admin/items/{document['id']}", json=document, headers=headers)


def test_a_steward_registers_and_changes_an_item_of_their_department(
    hub: RunningHub, people: dict[str, dict[str, str]]
) -> None:
    document = new_item("civil-registry")
    assert put(hub, document, people["civil"]).status_code == 200
    response = httpx.post(
        f"{hub.url}/v1/admin/items/{document['id']}/deprecate", headers=people["civil"]
    )
    assert response.status_code == 200, response.text
    entry = audit_entry_for(hub, response, action="registry.item.deprecate")
    assert (entry["outcome"], entry["person"]) == ("ok", "cecilia")


@pytest.mark.parametrize(
    ("who", "refusal"), [("tax", "not-steward"), ("admin", "forbidden"), ("auditor", "forbidden")]
)
def test_no_one_else_registers_an_item_for_a_department(
    hub: RunningHub, people: dict[str, dict[str, str]], who: str, refusal: str
) -> None:
    document = new_item("civil-registry")
    response = put(hub, document, people[who])
    assert response.status_code == 403, response.text
    assert problem_type(response) == refusal
    entry = audit_entry_for(hub, response, action="registry.item.put")
    assert (entry["outcome"], entry["reason"]) == ("refused", refusal)
    assert httpx.get(f"{hub.url}/v1/items/{document['id']}").status_code == 404


@pytest.mark.parametrize("path", ["deprecate", "retire"])
def test_a_steward_cannot_change_another_departments_item(
    hub: RunningHub, people: dict[str, dict[str, str]], path: str
) -> None:
    response = httpx.post(
        f"{hub.url}/v1/admin/items/tax.debt-status/{path}", headers=people["civil"]
    )
    assert response.status_code == 403
    assert problem_type(response) == "not-steward"
    assert httpx.get(f"{hub.url}/v1/items/tax.debt-status").json()["lifecycle"] == "active"


def test_a_steward_cannot_add_a_version_to_another_departments_item(
    hub: RunningHub, people: dict[str, dict[str, str]]
) -> None:
    schema = load_item("tax.debt-status")["schema"]
    response = httpx.post(
        f"{hub.url}/v1/admin/items/tax.debt-status/versions",
        json={"schema": schema, "examples": []},
        headers=people["civil"],
    )
    assert response.status_code == 403
    assert problem_type(response) == "not-steward"


def test_a_steward_cannot_take_over_another_departments_item(
    hub: RunningHub, people: dict[str, dict[str, str]]
) -> None:
    document = copy.deepcopy(load_item("tax.debt-status"))
    document["owner"] = "civil-registry"
    response = put(hub, document, people["civil"])
    assert response.status_code == 409
    assert httpx.get(f"{hub.url}/v1/items/tax.debt-status").json()["owner"] == "tax"


def test_departments_and_clients_are_the_administrators(
    hub: RunningHub, people: dict[str, dict[str, str]]
) -> None:
    department = f"dept-{uuid.uuid4().hex[:6]}"
    body = {"name": "A board", "description": "", "adapter_url": None}
    url = f"{hub.url}/v1/admin/departments/{department}"
    for who in ("civil", "auditor"):
        response = httpx.put(url, json=body, headers=people[who])
        assert response.status_code == 403, response.text
        assert problem_type(response) == "forbidden"
    assert httpx.put(url, json=body, headers=people["admin"]).status_code == 200


def test_audit_queries_are_the_auditors(hub: RunningHub, people: dict[str, dict[str, str]]) -> None:
    url = f"{hub.url}/v1/audit/entries"
    assert httpx.get(url, headers=people["auditor"]).status_code == 200
    for who in ("civil", "admin"):
        response = httpx.get(url, headers=people[who])
        assert response.status_code == 403
        assert problem_type(response) == "forbidden"


EXAMPLES = CATALOGUE.parent / "docs" / "examples" / "registry"


def test_the_walk_through_in_docs_registry_md_answers_as_written(
    hub: RunningHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The files docs/registry.md walks a new steward through, with the CLI."""
    from onceonly.hub.cli import main

    erik = signed_in(hub, "erik", steward("education"))["Authorization"].split()[1]
    monkeypatch.setenv("ONCEONLY_TOKEN", erik)

    def onceonly(*argv: str) -> tuple[int, str, str]:
        status = main([*argv, "--hub", hub.url])
        out, err = capsys.readouterr()
        return status, out, err

    status, out, err = onceonly("items", "register", str(EXAMPLES / "library-card.json"))
    assert status == 0, err
    assert json.loads(out)["personal_fields"] == ["personal_code"]
    status, out, err = onceonly(
        "items", "version", "education.library-card", str(EXAMPLES / "v2.json")
    )
    assert (status, json.loads(out)["latest_version"]) == (0, 2), err
    status, _, err = onceonly(
        "items", "version", "education.library-card", str(EXAMPLES / "v3-required-branch.json")
    )
    assert status == 1
    assert "requires property 'branch', version 2 does not" in err
    status, _, err = onceonly(
        "items", "version", "education.library-card", str(EXAMPLES / "v3-hostile.json")
    )
    assert status == 1
    assert "/properties/card_number/pattern" in err
    assert "catastrophic backtracking" in err
