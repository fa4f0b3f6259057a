"""The served /openapi.json: valid OpenAPI 3.1, the committed snapshot, and honest
about bodies, security and problems (decision 0024)."""

from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from tests.hub.openapi.references import problem_types, resolved
from tests.hub.openapi.regenerate import COMMAND, SNAPSHOT, render
from tests.hub_testing import RunningHub, problem_type


@pytest.fixture(scope="module")
def document(hub: RunningHub) -> dict[str, Any]:
    response = httpx.get(f"{hub.url}/openapi.json")
    assert response.status_code == 200
    served: dict[str, Any] = response.json()
    return served


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


def test_served_document_is_the_committed_snapshot(document: dict[str, Any]) -> None:
    committed = SNAPSHOT.read_text(encoding="utf-8")
    assert committed == render(document), f"docs/openapi.json is stale: run `{COMMAND}`"


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    validate(document)


def test_no_phantom_validation_error(document: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in str(document)
    assert all(
        "422" not in op["responses"] or op["responses"]["422"].get("x-problem-types")
        for _, _, op in operations(document)
    )


def test_every_operation_says_who_may_call_it(document: dict[str, Any]) -> None:
    schemes = set(document["components"]["securitySchemes"])
    for method, path, operation in operations(document):
        assert "security" in operation, (method, path)
        for requirement in operation["security"]:
            assert set(requirement) <= schemes, (method, path)


def test_problems_are_problem_json(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                response = resolved(document, response)  # a shared one (decision 0054)
                assert list(response["content"]) == ["application/problem+json"], (path, status)
                assert response["x-problem-types"], (method, path, status)


@pytest.mark.parametrize(
    ("method", "path", "media_type"),
    [
        ("post", "/v1/items/{item_id}/records/query", "application/json"),
        ("put", "/v1/admin/items/{item_id}", "application/json"),
        ("post", "/v1/people/sign-in", "application/json"),
        ("post", "/oauth/token", "application/x-www-form-urlencoded"),
    ],
)
def test_write_operations_declare_their_body(
    document: dict[str, Any], method: str, path: str, media_type: str
) -> None:
    body = document["paths"][path][method]["requestBody"]
    assert body["required"] is True
    assert list(body["content"]) == [media_type]


def test_record_query_is_for_machines_and_declares_its_refusals(
    document: dict[str, Any],
) -> None:
    operation = document["paths"]["/v1/items/{item_id}/records/query"]["post"]
    assert operation["security"] == [{"machineClient": []}]
    types = {
        status: problem_types(resolved(document, response))
        for status, response in operation["responses"].items()
        if int(status) >= 400
    }
    assert {"invalid-token", "invalid-dpop-proof", "use-dpop-nonce"} <= types["401"]
    assert {"insufficient-scope", "no-grant"} <= types["403"]
    assert {"unknown-item", "record-not-found"} <= types["404"]


def test_catalogue_reads_are_public(document: dict[str, Any]) -> None:
    assert document["paths"]["/v1/items"]["get"]["security"] == []


def test_a_refusal_is_one_the_document_declares(hub: RunningHub, document: dict[str, Any]) -> None:
    response = httpx.get(f"{hub.url}/v1/items/no.such-item")
    assert response.status_code == 404
    declared = document["paths"]["/v1/items/{item_id}"]["get"]["responses"]["404"]
    assert f"urn:onceonly:problem:{problem_type(response)}" in declared["x-problem-types"]


def test_a_leaves_page_always_has_next_cursor(hub: RunningHub) -> None:
    page = httpx.get(f"{hub.url}/v1/audit/leaves", params={"start": 0, "limit": 1000}).json()
    assert "next_cursor" in page
    assert all(set(entry) == {"index", "leaf_hash"} for entry in page["entries"])


def _keys_of_every_schema(node: Any, where: str = "#") -> list[tuple[str, str]]:
    found = []
    if isinstance(node, dict):
        found += [(where, key) for key in node if key in ("ge", "le", "gt", "lt")]
        for key, value in node.items():
            found += _keys_of_every_schema(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _keys_of_every_schema(value, f"{where}/{index}")
    return found


def test_bounds_are_json_schema_keywords(document: dict[str, Any]) -> None:
    """pydantic's names of the bounds (``ge``, ``le``, ``gt``, ``lt``) are no JSON Schema
    keywords: a reader would see no bound at all (onceonly.hub.kit.strict.DecimalDigits)."""
    assert _keys_of_every_schema(document) == []
    limit = document["paths"]["/v1/audit/leaves"]["get"]["parameters"][1]
    assert limit["name"] == "limit"
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000)
    cursor = document["paths"]["/v1/audit/entries"]["get"]["parameters"][0]["schema"]
    assert cursor["anyOf"][0] == {"type": "integer", "minimum": 0, "maximum": 2**53 - 1}


def test_a_grant_for_a_retired_item_is_a_declared_refusal(
    hub: RunningHub, document: dict[str, Any]
) -> None:
    admin = {"Authorization": f"Bearer {hub.keys.admin_token}"}
    item = "education.diploma"  # no other test here reads it
    retired = httpx.post(f"{hub.url}/v1/admin/items/{item}/retire", headers=admin)
    assert retired.status_code == 200, retired.text
    grant = {"consumer": "tax", "item": item, "purpose": "statistics", "legal_basis": "Test"}
    response = httpx.post(f"{hub.url}/v1/admin/grants", json=grant, headers=admin)
    assert response.status_code == 410, response.text
    declared = document["paths"]["/v1/admin/grants"]["post"]["responses"]["410"]
    assert f"urn:onceonly:problem:{problem_type(response)}" in declared["x-problem-types"]
