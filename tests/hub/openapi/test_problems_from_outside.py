"""The problems an operation answers for reasons outside the route are in the contract
(decision 0054): 500 ``internal-error`` on every operation, 503
``database-unavailable`` with ``Retry-After`` on every operation that reaches the
database, each one shared response that operations reference.

On the document as the hub builds it; tests/hub/openapi/test_database_away.py checks
on a live hub that the answers are the declared ones."""

import inspect
from typing import Any

import pytest
from openapi_spec_validator import validate

from onceonly.hub.app import create_app
from onceonly.hub.errors import DATABASE_RETRY_AFTER
from onceonly.hub.ops import openapi

from tests.hub.openapi import regenerate
from tests.hub.openapi.references import (
    PROBLEM_JSON,
    header_of,
    problem_types,
    resolved,
    response_of,
    validator,
)

Operations = list[tuple[str, str, dict[str, Any]]]
RETRY_AFTER = "Retry-After"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return regenerate.document()


def operations(document: dict[str, Any]) -> Operations:
    return [
        (method.upper(), path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


def declares_database_unavailable(document: dict[str, Any], operation: dict[str, Any]) -> bool:
    if "503" not in operation["responses"]:
        return False
    return "database-unavailable" in problem_types(response_of(document, operation, 503))


def test_every_operation_declares_internal_error(document: dict[str, Any]) -> None:
    missing = [
        (method, path)
        for method, path, operation in operations(document)
        if "500" not in operation["responses"]
        or "internal-error" not in problem_types(response_of(document, operation, 500))
    ]
    assert missing == []


def test_every_operation_that_reaches_the_database_declares_503_with_retry_after(
    document: dict[str, Any],
) -> None:
    reaching = [
        (method, path, operation)
        for method, path, operation in operations(document)
        if (method, path) not in openapi.WITHOUT_DATABASE
    ]
    assert len(reaching) > 60, "the document lost operations"
    missing = [
        (method, path)
        for method, path, operation in reaching
        if not declares_database_unavailable(document, operation)
    ]
    assert missing == []
    for method, path, operation in reaching:
        response = response_of(document, operation, 503)
        schema = response["content"][PROBLEM_JSON]["schema"]
        assert schema == {"$ref": "#/components/schemas/Problem"}, (method, path)
        retry_after = header_of(document, response, "Retry-After")
        assert validator(document, retry_after["schema"]).is_valid(DATABASE_RETRY_AFTER)
        assert not validator(document, retry_after["schema"]).is_valid("soon")


def test_the_operations_that_never_reach_the_database_do_not_declare_it(
    document: dict[str, Any],
) -> None:
    by_name = {(method, path): operation for method, path, operation in operations(document)}
    assert set(openapi.WITHOUT_DATABASE) <= set(by_name), "a listed operation is gone"
    declaring = [
        name
        for name in sorted(openapi.WITHOUT_DATABASE)
        if declares_database_unavailable(document, by_name[name])
    ]
    assert declaring == []
    readyz = response_of(document, by_name[("GET", "/readyz")], 503)
    assert problem_types(readyz) == {"unavailable"}  # its own probe's answer, no Retry-After
    assert "headers" not in readyz


def test_a_status_whose_only_problem_is_shared_references_the_shared_response(
    document: dict[str, Any],
) -> None:
    shared = document["components"]["responses"]
    assert problem_types(shared["DatabaseUnavailable"]) == {"database-unavailable"}
    assert problem_types(shared["InternalError"]) == {"internal-error"}
    assert problem_types(shared["RequestTimeout"]) == {"request-timeout"}
    assert problem_types(shared["HttpVersionNotSupported"]) == {"http-version-not-supported"}
    assert problem_types(shared["NotImplemented"]) == {
        "method-not-implemented",
        "transfer-coding-not-implemented",
    }
    shared_types = [problem_types(response) for response in shared.values()]
    referenced = {status: 0 for status in ("500", "503", "408", "501", "505")}
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if "$ref" in response:
                referenced[status] += 1
            elif problem_types(response) in shared_types:
                pytest.fail(f"{method} {path} {status} repeats a shared response")
    assert referenced["500"] > 60
    assert referenced["503"] > 5  # the routes neither audited nor for machines
    # written by the server before any route: on every operation (decision 0077)
    counted = sum(1 for _ in operations(document))
    assert referenced["408"] == referenced["501"] == referenced["505"] == counted
    catalogue = document["paths"]["/v1/items"]["get"]["responses"]
    assert catalogue["503"] == {"$ref": "#/components/responses/DatabaseUnavailable"}


def test_a_503_with_other_problems_lists_them_with_database_unavailable(
    document: dict[str, Any],
) -> None:
    grants = document["paths"]["/v1/admin/grants"]["get"]
    response = response_of(document, grants, 503)
    assert problem_types(response) == {"audit-unavailable", "database-unavailable"}
    assert header_of(document, response, "Retry-After")["schema"]["type"] == "integer"
    proofs = document["paths"]["/v1/audit/proof/inclusion"]["get"]
    assert problem_types(response_of(document, proofs, 500)) == {
        "audit-log-damaged",
        "internal-error",
    }


# The problems the hub answers with ``Retry-After`` (hub/errors.py, hub/auth/exceptions.py,
# hub/auth/service.py, hub/people/service.py).
ANSWERED_WITH_RETRY_AFTER = {
    "database-unavailable",
    "oauth-slow-down",
    "sign-in-throttled",
    "client-tokens-outstanding",
}
OAUTH_ENDPOINTS = ("/oauth/token", "/oauth/introspect", "/oauth/revoke")


def test_every_response_of_a_problem_answered_with_retry_after_declares_it(
    document: dict[str, Any],
) -> None:
    """Before: only ``database-unavailable``'s responses did; a client generated from
    the contract did not know that a 429 ``oauth-slow-down`` says when to try again."""
    missing, seen = [], set()
    for method, path, operation in operations(document):
        for status, declared in operation["responses"].items():
            response = resolved(document, declared)
            carrying = problem_types(response) & ANSWERED_WITH_RETRY_AFTER
            seen |= carrying
            if carrying and RETRY_AFTER not in response.get("headers", {}):
                missing.append((method, path, status))
    assert missing == []
    assert seen == ANSWERED_WITH_RETRY_AFTER


@pytest.mark.parametrize("path", OAUTH_ENDPOINTS)
def test_the_oauth_endpoints_429_declares_retry_after_in_whole_seconds(
    document: dict[str, Any], path: str
) -> None:
    response = response_of(document, document["paths"][path]["post"], 429)
    assert problem_types(response) == {"oauth-slow-down"}
    schema = header_of(document, response, RETRY_AFTER)["schema"]
    assert validator(document, schema).is_valid(1)
    assert not validator(document, schema).is_valid("soon")


def test_a_machine_clients_route_declares_the_single_use_registers_503(
    document: dict[str, Any],
) -> None:
    query = document["paths"][openapi.RECORD_QUERY_PATH]["post"]
    assert {"unavailable", "database-unavailable"} <= problem_types(
        response_of(document, query, 503)
    )


def test_an_items_document_carries_the_shared_responses_it_references(
    document: dict[str, Any],
) -> None:
    schema = {"type": "object", "properties": {"street": {"type": "string"}}}
    item = openapi.item_document(
        document, item_id="person.address", title="An address", schemas={1: schema}
    )
    validate(item)
    (query,) = (methods["post"] for methods in item["paths"].values())
    assert "internal-error" in problem_types(resolved(item, query["responses"]["500"]))
    response = resolved(item, query["responses"]["503"])
    assert "database-unavailable" in problem_types(response)
    assert header_of(item, response, "Retry-After")["schema"]["minimum"] == 0


# --- the single-use register ------------------------------------------------------------
# A spend whose commit fails is answered 503 ``unavailable``. A route spends in the
# register in one of two ways: a machine client's credential (its DPoP proof's jti,
# spent by the caller check or beside the route's own query), or by naming the
# register, which it reaches only through the running hub (``hub.jti_register``,
# directly or as ``JtiRegisterDep``), in its endpoint or in one of its dependencies.
REGISTER = "jti_register"
KNOWN_SPENDERS = {
    ("POST", "/oauth/token"),  # the client assertion's jti and the DPoP proof's
    ("POST", "/oauth/introspect"),  # the client assertion's jti
    ("POST", "/oauth/revoke"),
    ("GET", "/v1/people/oidc/callback"),  # the sign-in's state
    ("POST", "/v1/people/oidc/token"),  # the one-time code
    ("POST", openapi.RECORD_QUERY_PATH),  # a machine client's DPoP proof
    ("GET", "/v1/clients/self"),
}


def _source(call: Any) -> str:
    """The text of a route's endpoint or dependency (a callable object: its ``__call__``)."""
    function = call if inspect.isfunction(call) or inspect.ismethod(call) else type(call).__call__
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):  # the framework's own, compiled: it knows no register
        return ""


def _names_register(route: Any) -> bool:
    dependant = route.dependant
    calls = [dependant.call, *openapi._calls(dependant)]
    return any(REGISTER in _source(call) for call in calls)


def _machine(operation: dict[str, Any]) -> bool:
    return any(openapi.MACHINE_SCHEME in way for way in operation.get("security", []))


def test_every_route_that_spends_in_the_single_use_register_declares_its_503(
    document: dict[str, Any],
) -> None:
    by_name = {(method, path): operation for method, path, operation in operations(document)}
    named = {
        (method, route.path_format)
        for route in openapi._api_routes(create_app())
        if _names_register(route)
        for method in route.methods
    }
    spenders = named | {name for name, operation in by_name.items() if _machine(operation)}
    assert spenders >= KNOWN_SPENDERS, "the register is reached in a way this test misses"
    undeclared = sorted(
        name
        for name in spenders
        if "503" not in by_name[name]["responses"]
        or "unavailable" not in problem_types(response_of(document, by_name[name], 503))
    )
    assert undeclared == []
