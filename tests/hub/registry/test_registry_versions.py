"""Item versions, lifecycle and catalogue search over HTTP, on both databases; the
``onceonly items`` commands; hostile uploads that must never cost a 500 or a hung worker.
"""

import copy
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from onceonly.hub.cli import main

from tests.hub_testing import (
    CATALOGUE,
    DATABASES,
    RunningHub,
    audit_entry_for,
    catalogue_hub,
    load_item,
    problem_type,
)

Json = dict[str, Any]
DRAFT = "https://json-schema.org/draft/2020-12/schema"


@pytest.fixture(scope="module", params=DATABASES)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    with catalogue_hub(request, tmp_path_factory) as running:
        yield running


def headers(hub: RunningHub) -> dict[str, str]:
    return {"Authorization": f"Bearer {hub.keys.admin_token}"}


def new_item(hub: RunningHub, **changes: Any) -> Json:
    """A registered copy of the address item under a fresh id."""
    document = copy.deepcopy(load_item("person.residential-address"))
    document["id"] = f"test.item-{uuid.uuid4().hex[:8]}"
    document.update(changes)
    response = httpx.put(
        f"{hub.url}/v1/admin/items/{document['id']}", json=document, headers=headers(hub)
    )
    assert response.status_code == 200, response.text
    return document


def post(hub: RunningHub, path: str, body: Any = None) -> httpx.Response:
    return httpx.post(f"{hub.url}/v1/admin/items/{path}", json=body, headers=headers(hub))


def add_version(hub: RunningHub, item_id: str, schema: Json, examples: Any = ()) -> httpx.Response:
    return post(hub, f"{item_id}/versions", {"schema": schema, "examples": list(examples)})


def with_field(document: Json, name: str, sub: Json, *, required: bool = False) -> Json:
    schema = copy.deepcopy(document["schema"])
    schema["properties"][name] = sub
    if required:
        schema["required"].append(name)
    return schema


FLOOR = {"type": "integer", "minimum": 0, "title": "Floor", "description": "Floor."}


# --- versions --------------------------------------------------------------------------------


def test_a_compatible_version_is_registered_audited_and_listed(hub: RunningHub) -> None:
    document = new_item(hub)
    schema = with_field(document, "floor", FLOOR)
    examples = [{**document["examples"][0], "floor": 3}]
    response = add_version(hub, document["id"], schema, examples)
    assert response.status_code == 200, response.text
    assert response.json()["latest_version"] == 2
    entry = audit_entry_for(hub, response, action="registry.item.version")
    assert (entry["outcome"], entry["item"], entry["version"]) == ("ok", document["id"], 2)
    assert entry["department"] == document["owner"]
    listed = httpx.get(f"{hub.url}/v1/items/{document['id']}/versions").json()
    assert [v["version"] for v in listed["versions"]] == [1, 2]
    assert "floor" in listed["versions"][1]["fields"]
    assert "floor" not in listed["versions"][0]["fields"]
    # every time carries its offset, on SQLite too (which stores none)
    assert all(v["created_at"].endswith(("Z", "+00:00")) for v in listed["versions"])
    served = httpx.get(f"{hub.url}/v1/items/{document['id']}/versions/2").json()
    assert served["schema"] == schema


def test_sending_the_latest_schema_again_changes_nothing(hub: RunningHub) -> None:
    document = new_item(hub)
    schema = with_field(document, "floor", FLOOR)
    first, again = (
        add_version(hub, document["id"], schema),
        add_version(hub, document["id"], schema),
    )
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["latest_version"] == 2
    re_put = httpx.put(
        f"{hub.url}/v1/admin/items/{document['id']}", json=document, headers=headers(hub)
    )
    assert re_put.status_code == 200, re_put.text  # version 1's document still fits
    assert re_put.json()["latest_version"] == 2


def test_an_incompatible_version_is_refused_with_the_pointer(hub: RunningHub) -> None:
    document = new_item(hub)
    schema = with_field(document, "floor", FLOOR, required=True)
    response = add_version(hub, document["id"], schema)
    assert response.status_code == 409, response.text
    assert problem_type(response) == "incompatible-version"
    assert response.json()["detail"] == (
        f"version 2 of {document['id']!r} is not BACKWARD-compatible with version 1: /: the new"
        " version requires property 'floor', version 1 does not (data valid under version 1"
        " could be invalid under the new version) (mode BACKWARD)"
    )
    entry = audit_entry_for(hub, response, action="registry.item.version")
    assert (entry["outcome"], entry["reason"]) == ("refused", "incompatible-version")
    item = httpx.get(f"{hub.url}/v1/items/{document['id']}").json()
    assert item["latest_version"] == 1


def test_a_change_the_checker_cannot_judge_is_refused(hub: RunningHub) -> None:
    document = new_item(hub)
    schema = with_field(document, "city", {"anyOf": [{"type": "string"}, {"type": "null"}]})
    response = add_version(hub, document["id"], schema)
    assert response.status_code == 422
    assert problem_type(response) == "compatibility-not-judged"
    assert response.json()["detail"].startswith(
        "cannot judge compatibility of 'anyOf' at /properties/city (mode BACKWARD)"
    )
    # a new field that version 1 forbade needs no judging: no old data has it
    new_field = with_field(document, "floor", {"anyOf": [{"type": "integer"}, {"type": "null"}]})
    assert add_version(hub, document["id"], new_field).status_code == 200


def test_mode_none_accepts_any_valid_schema(hub: RunningHub) -> None:
    document = new_item(hub, compatibility="NONE")
    schema = with_field(document, "floor", FLOOR, required=True)
    assert add_version(hub, document["id"], schema).json()["latest_version"] == 2


@pytest.mark.parametrize(
    ("changes", "pointer"),
    [
        ({"properties": {"x": {"type": "string", "pattern": "^(a+)+$"}}}, "/properties/x/pattern"),
        ({"$defs": {"a": {"$ref": "#/$defs/a"}}}, "/$defs/a/$ref"),
        ({"properties": {"x": {"$ref": "https://evil.example/s.json"}}}, "/properties/x/$ref"),
    ],
    ids=["redos", "ref-loop", "remote-ref"],
)
def test_a_hostile_version_is_refused(hub: RunningHub, changes: Json, pointer: str) -> None:
    document = new_item(hub)
    schema = {**document["schema"], **changes}
    response = add_version(hub, document["id"], schema)
    assert response.status_code == 422, response.text
    assert problem_type(response) == "invalid-schema"
    assert response.json()["detail"].startswith(pointer + ":")


def test_examples_of_a_version_must_validate(hub: RunningHub) -> None:
    document = new_item(hub)
    response = add_version(hub, document["id"], document["schema"], [{"street": 1}])
    assert response.status_code == 422
    assert response.json()["detail"].startswith("/examples/0 does not match the schema")


def test_version_of_an_unknown_item_is_404(hub: RunningHub) -> None:
    response = add_version(hub, "test.no-such-item", {"$schema": DRAFT, "type": "object"})
    assert response.status_code == 404
    assert problem_type(response) == "unknown-item"
    assert httpx.get(f"{hub.url}/v1/items/test.no-such-item/versions").status_code == 404


@pytest.mark.parametrize("path", ["versions", "deprecate", "retire"])
def test_lifecycle_and_version_routes_need_a_sign_in(hub: RunningHub, path: str) -> None:
    response = httpx.post(
        f"{hub.url}/v1/admin/items/person.identity/{path}",
        json={"schema": {}},
        headers={"Authorization": "Bearer nope"},
    )
    assert response.status_code == 401
    assert problem_type(response) == "not-signed-in"


def test_the_catalogue_import_registers_later_versions_and_can_run_again(hub: RunningHub) -> None:
    item = httpx.get(f"{hub.url}/v1/items/vehicle.driving-licence").json()
    assert item["latest_version"] == 2
    with hub.admin() as admin:
        admin.import_catalogue(CATALOGUE)
    again = httpx.get(f"{hub.url}/v1/items/vehicle.driving-licence").json()
    assert again["latest_version"] == 2


# --- lifecycle ----------------------------------------------------------------------------------


def test_deprecate_then_retire(hub: RunningHub) -> None:
    document = new_item(hub)
    item_id = document["id"]
    deprecated = post(hub, f"{item_id}/deprecate")
    assert deprecated.json()["lifecycle"] == "deprecated"
    entry = audit_entry_for(hub, deprecated, action="registry.item.deprecate")
    assert (entry["outcome"], entry["item"]) == ("ok", item_id)
    assert post(hub, f"{item_id}/deprecate").status_code == 200  # idempotent
    retired = post(hub, f"{item_id}/retire")
    assert retired.json()["lifecycle"] == "retired"
    assert audit_entry_for(hub, retired, action="registry.item.retire")["outcome"] == "ok"
    back = post(hub, f"{item_id}/deprecate")
    assert (back.status_code, problem_type(back)) == (409, "registry-conflict")
    version = add_version(hub, item_id, with_field(document, "floor", FLOOR))
    assert (version.status_code, problem_type(version)) == (410, "item-retired")
    shown = httpx.get(f"{hub.url}/v1/items/{item_id}").json()
    assert shown["lifecycle"] == "retired"


# --- search ---------------------------------------------------------------------------------------


def search(hub: RunningHub, **params: str) -> list[str]:
    response = httpx.get(f"{hub.url}/v1/items", params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_search_by_text_owner_tag_classification_and_sharing_class(hub: RunningHub) -> None:
    assert "person.residential-address" in search(hub, q="ADDRESS")
    assert "person.residential-address" in search(hub, q="residential")
    assert search(hub, q="100%_no_such_thing") == []
    assert set(search(hub, owner="tax")) >= {"tax.debt-status", "tax.annual-income-statement"}
    assert all(i.startswith("tax.") for i in search(hub, owner="tax"))
    tag = load_item("vehicle.driving-licence")["tags"][0]
    assert "vehicle.driving-licence" in search(hub, tag=tag)
    assert search(hub, sharing_class="none", owner="tax") == ["tax.audit-risk-assessment"]
    personal = search(hub, classification="sensitive-personal")
    assert personal
    assert all(i not in personal for i in search(hub, classification="public"))
    assert "person.identity" in search(hub, lifecycle="active", q="identity")


@pytest.mark.parametrize(
    "params",
    [{"classification": "secret"}, {"lifecycle": "dead"}, {"owner": "Not An Owner"}, {"q": ""}],
)
def test_invalid_search_criteria_are_400(hub: RunningHub, params: dict[str, str]) -> None:
    response = httpx.get(f"{hub.url}/v1/items", params=params)
    assert response.status_code == 400
    assert problem_type(response) == "invalid-request"


# --- grants: "all fields" means those of the version granted ------------------------------------


def test_a_grant_for_all_fields_snapshots_the_fields_of_the_version(hub: RunningHub) -> None:
    document = new_item(hub, sharing_class="conditional")
    with hub.admin() as admin:
        grant = admin.create_grant(
            consumer="social-welfare",
            item=document["id"],
            purpose="benefit-eligibility",
            legal_basis="Social Welfare Act §12",
        )
    assert grant["fields"] == sorted(document["schema"]["properties"])
    add_version(hub, document["id"], with_field(document, "floor", FLOOR))
    with hub.admin() as admin:
        grants = admin.list_grants(consumer="social-welfare")
    (same,) = [g for g in grants if g["id"] == grant["id"]]
    assert "floor" not in same["fields"]


# --- hostile uploads ----------------------------------------------------------------------------


def raw_put(hub: RunningHub, item_id: str, body: bytes) -> httpx.Response:
    return httpx.put(
        f"{hub.url}/v1/admin/items/{item_id}",
        content=body,
        headers={**headers(hub), "Content-Type": "application/json"},
        timeout=10,
    )


def test_a_deeply_nested_64_kib_body_is_400(hub: RunningHub) -> None:
    depth = 64 * 1024 // 8
    body = ('{"a":' * depth + "1" + "}" * depth)[: 64 * 1024 - 1].encode()
    response = raw_put(hub, "test.deep", body)
    assert response.status_code == 400
    assert problem_type(response) == "invalid-request"


def test_a_1_mb_body_is_413(hub: RunningHub) -> None:
    response = raw_put(hub, "test.big", b'{"id": "' + b"x" * 1_000_000 + b'"}')
    assert response.status_code == 413


def test_a_redos_pattern_with_a_hostile_example_is_refused_at_once(hub: RunningHub) -> None:
    document = copy.deepcopy(load_item("person.residential-address"))
    document["id"] = "test.redos"
    document["schema"]["properties"]["street"]["pattern"] = "^(a+)+$"
    document["examples"] = [{**document["examples"][0], "street": "a" * 40 + "!"}]
    started = time.perf_counter()
    response = raw_put(hub, "test.redos", json.dumps(document).encode())
    assert time.perf_counter() - started < 2
    assert response.status_code == 422
    assert response.json()["detail"].startswith("/properties/street/pattern: regular expression")


def test_the_largest_enum_that_fits_is_handled_quickly(hub: RunningHub) -> None:
    document = copy.deepcopy(load_item("person.residential-address"))
    document["id"], document["examples"] = f"test.enum-{uuid.uuid4().hex[:6]}", []
    document["schema"]["properties"]["city"]["enum"] = list(range(8_000))
    body = json.dumps(document).encode()
    assert len(body) < 64 * 1024
    started = time.perf_counter()
    response = raw_put(hub, document["id"], body)
    assert response.status_code == 200, response.text
    version = with_field(document, "floor", FLOOR)
    version["properties"]["city"]["enum"] = list(range(8_001))
    assert add_version(hub, document["id"], version).status_code == 200
    assert time.perf_counter() - started < 5


# --- the CLI --------------------------------------------------------------------------------------


@pytest.fixture
def cli(hub: RunningHub, monkeypatch: pytest.MonkeyPatch) -> RunningHub:
    monkeypatch.setenv("ONCEONLY_HUB_URL", hub.url)
    monkeypatch.setenv("ONCEONLY_ADMIN_TOKEN", hub.keys.admin_token)
    return hub


def test_cli_walk_through(
    cli: RunningHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = copy.deepcopy(load_item("person.residential-address"))
    document["id"] = f"test.cli-{uuid.uuid4().hex[:6]}"
    item_file = tmp_path / "item.json"
    item_file.write_text(json.dumps(document))
    assert main(["items", "register", str(item_file)]) == 0
    assert json.loads(capsys.readouterr().out)["latest_version"] == 1

    compatible = tmp_path / "v2.json"
    compatible.write_text(json.dumps({"schema": with_field(document, "floor", FLOOR)}))
    assert main(["items", "version", document["id"], str(compatible)]) == 0
    assert json.loads(capsys.readouterr().out)["latest_version"] == 2

    breaking = tmp_path / "v3.json"
    breaking.write_text(json.dumps({"schema": document["schema"]}))
    assert main(["items", "version", document["id"], str(breaking)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("refused: HTTP 409: Version breaks the item's compatibility mode:")
    assert "/properties/floor:" in error

    assert main(["items", "list", "--q", document["id"]]) == 0
    assert [i["id"] for i in json.loads(capsys.readouterr().out)] == [document["id"]]
    assert main(["items", "show", document["id"]]) == 0
    assert [v["version"] for v in json.loads(capsys.readouterr().out)["versions"]] == [1, 2]
    assert main(["items", "deprecate", document["id"]]) == 0
    assert json.loads(capsys.readouterr().out)["lifecycle"] == "deprecated"
    assert main(["items", "retire", document["id"]]) == 0
    assert json.loads(capsys.readouterr().out)["lifecycle"] == "retired"


def test_cli_says_what_is_wrong_with_a_file(cli: RunningHub, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(SystemExit, match="is not valid JSON"):
        main(["items", "register", str(broken)])
    with pytest.raises(SystemExit, match="cannot read"):
        main(["items", "register", str(tmp_path / "missing.json")])
