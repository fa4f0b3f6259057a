"""GET /v1/items/{item_id}/openapi.json: one item's record query, typed by its schemas."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from tests.hub.exchange_world import ADDRESS, PURPOSE, SUBJECT, World, module_exchange_world
from tests.hub_testing import problem_type

FAMILY = "person.family-relations"  # its schema has $defs and a local $ref


@pytest.fixture(scope="module", params=["sqlite"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with module_exchange_world(request, tmp_path_factory) as built:
        yield built


def item_document(world: World, item: str) -> dict[str, Any]:
    response = httpx.get(f"{world.hub.url}/v1/items/{item}/openapi.json")  # no credentials
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def record_schema(document: dict[str, Any], name: str) -> Draft202012Validator:
    """A validator of ``components.schemas[name]`` whose references resolve in the document."""
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", **document})


@pytest.mark.parametrize("item", [ADDRESS, FAMILY])
def test_item_document_is_valid_openapi(world: World, item: str) -> None:
    document = item_document(world, item)
    validate(document)
    assert list(document["paths"]) == [f"/v1/items/{item}/records/query"]
    assert f"{item}.v1" in document["components"]["schemas"]


def test_record_the_hub_returns_matches_the_declared_schema(world: World) -> None:
    document = item_document(world, ADDRESS)
    with world.client() as client:
        result = client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
    validator = record_schema(document, f"{ADDRESS}.v{result.version}")
    assert list(validator.iter_errors(result.record)) == []
    assert not record_schema(document, f"{ADDRESS}.v{result.version}").is_valid(
        {**result.record, "street": 1}
    ), "the declared schema must be the record's own, not anything-goes"


def test_query_declares_dpop_and_the_main_documents_problems(world: World) -> None:
    document = item_document(world, ADDRESS)
    operation = document["paths"][f"/v1/items/{ADDRESS}/records/query"]["post"]
    hub = httpx.get(f"{world.hub.url}/openapi.json").json()
    main = hub["paths"]["/v1/items/{item_id}/records/query"]["post"]
    assert operation["security"] == main["security"] == [{"machineClient": []}]
    problems = {s: r for s, r in main["responses"].items() if int(s) >= 400}
    assert {s: operation["responses"][s] for s in problems} == problems
    versions = operation["requestBody"]["content"]["application/json"]["schema"]
    assert versions["properties"]["version"]["enum"] == [1]


def test_unknown_item_has_no_document(world: World) -> None:
    response = httpx.get(f"{world.hub.url}/v1/items/no.such-item/openapi.json")
    assert response.status_code == 404
    assert problem_type(response) == "unknown-item"


def test_retired_item_has_no_document(world: World) -> None:
    item = "vehicle.registration"  # no other test here reads it
    admin = {"Authorization": f"Bearer {world.hub.keys.admin_token}"}
    retired = httpx.post(f"{world.hub.url}/v1/admin/items/{item}/retire", headers=admin)
    assert retired.status_code == 200, retired.text
    response = httpx.get(f"{world.hub.url}/v1/items/{item}/openapi.json")
    assert response.status_code == 410  # as the record query answers for it
    assert problem_type(response) == "item-retired"
