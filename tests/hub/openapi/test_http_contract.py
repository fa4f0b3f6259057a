"""The hub takes what its routes declare (decision 0074): an API route refuses a query
parameter it does not declare, a 405 lists every method of the resource in ``Allow``,
and a GET route answers HEAD."""

import re
from typing import Any

import httpx
import pytest
from fastapi import routing

from onceonly.hub.app import create_app

from tests.hub_testing import RunningHub, audit_entry_for, problem_type


def _refused(response: httpx.Response, name: str, *, slug: str = "invalid-request") -> str:
    assert response.status_code == 400, response.text
    assert problem_type(response) == slug
    detail: str = response.json()["detail"]
    assert f"the query parameter {name!r} is not one" in detail
    return detail


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v1/audit/proof/inclusion?index=0&tree_size=5&TREE_SIZE=6", "TREE_SIZE"),
        ("/v1/audit/leaves?start=0&limt=1", "limt"),
        ("/v1/items?owner=tax&ownr=tax", "ownr"),
        ("/v1/items/person.residential-address?version=1", "version"),
        ("/.well-known/jwks.json?x=1", "x"),
        ("/v1/audit/checkpoint?cursor=", "cursor"),
    ],
)
def test_an_undeclared_query_parameter_is_refused(hub: RunningHub, path: str, name: str) -> None:
    _refused(httpx.get(f"{hub.url}{path}"), name)


def test_declared_parameters_are_taken(hub: RunningHub) -> None:
    assert httpx.get(f"{hub.url}/v1/items?owner=tax&q=income").status_code == 200
    proof = httpx.get(f"{hub.url}/v1/audit/proof/consistency?from=0&to=0")
    assert proof.status_code != 400 or "is not one" not in proof.text


@pytest.mark.parametrize("endpoint", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
@pytest.mark.parametrize("query", ["grant_type=client_credentials", "x=1"])
def test_an_oauth_request_with_a_query_is_refused_as_oauth_refuses(
    hub: RunningHub, endpoint: str, query: str
) -> None:
    """The OAuth endpoints' errors carry ``error`` (RFC 6749 §5.2, RFC 7662 §2.3, RFC 7009
    §2.2.1, docs/protocol.md): an undeclared query parameter was answered with the API's
    ``invalid-request``, which has none."""
    form = {"grant_type": "client_credentials", "token": "x", "client_assertion": "x"}
    response = httpx.post(f"{hub.url}{endpoint}?{query}", data=form)
    _refused(response, query.split("=")[0], slug="oauth-invalid-request")
    problem = response.json()
    assert problem["error"] == "invalid_request"
    assert problem["error_description"] == problem["detail"]


def test_an_auditors_misspelt_filter_is_refused_and_audited(hub: RunningHub) -> None:
    admin = {"Authorization": f"Bearer {hub.keys.admin_token}"}
    response = httpx.get(f"{hub.url}/v1/audit/entries?departmnt=tax&limit=2", headers=admin)
    detail = _refused(response, "departmnt")
    assert "department" in detail  # what it takes, to find the spelling
    entry = audit_entry_for(hub, response, action="audit.query")
    assert (entry["outcome"], entry["reason"]) == ("refused", "invalid-request")


def test_the_refused_name_is_quoted_without_its_control_characters(hub: RunningHub) -> None:
    response = httpx.get(f"{hub.url}/v1/items?a%01%E2%80%AEb%0Ac=1")
    detail = _refused(response, "a\x01\u202eb\nc")
    assert not any(char in detail for char in "\x01\u202e\n")
    assert r"a\x01\u202eb\nc" in detail


def test_the_provider_redirect_keeps_its_extra_parameters(hub: RunningHub) -> None:
    response = httpx.get(f"{hub.url}/v1/people/oidc/callback?state=s&code=c&iss=x")
    assert "is not one this operation takes" not in response.text


def test_console_pages_are_left_to_their_forms(hub: RunningHub) -> None:
    assert httpx.get(f"{hub.url}/sign-in?utm_source=x").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PATCH", "/v1/admin/clients/x", "GET, HEAD, PUT"),
        ("PATCH", "/v1/admin/grants", "GET, HEAD, POST"),
        ("PATCH", "/v1/access-requests", "GET, HEAD, POST"),
        ("DELETE", "/v1/admin/departments/tax", "GET, HEAD, PUT"),
        ("POST", "/v1/admin/people/someone", "GET, HEAD, PUT"),
        ("GET", "/v1/items/x/subscription", "DELETE, PUT"),
        ("GET", "/v1/items/x/records/query", "POST"),
        ("HEAD", "/v1/items/x/records/query", "POST"),
    ],
)
def test_a_405_allows_every_method_of_the_resource(
    hub: RunningHub, method: str, path: str, allow: str
) -> None:
    response = httpx.request(method, f"{hub.url}{path}")
    assert response.status_code == 405
    assert response.headers["allow"] == allow


@pytest.mark.parametrize(
    "path", ["/healthz", "/.well-known/jwks.json", "/v1/items", "/v1/audit/checkpoint"]
)
def test_a_get_route_answers_head(hub: RunningHub, path: str) -> None:
    got = httpx.get(f"{hub.url}{path}")
    head = httpx.head(f"{hub.url}{path}")
    assert (head.status_code, head.content) == (got.status_code, b"")
    for field in ("content-type", "content-length"):
        assert head.headers.get(field) == got.headers.get(field), field


def test_head_keeps_the_query_rules(hub: RunningHub) -> None:
    assert httpx.head(f"{hub.url}/v1/items?ownr=tax").status_code == 400


def _declared_methods() -> dict[str, set[str]]:
    app = create_app()
    found: dict[str, set[str]] = {}
    for context in routing.iter_route_contexts(app.routes):
        if context.methods and getattr(context, "path_regex", None) is not None:
            found.setdefault(context.path_format, set()).update(context.methods)
    return found


def _filled(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", template)


def test_every_path_allows_what_its_routes_declare(hub: RunningHub) -> None:
    """For each path template of the app, the console's included: a method none of its
    routes takes is answered 405 with every declared method in Allow, and HEAD where
    there is GET."""
    with httpx.Client(base_url=hub.url) as client:
        for template, methods in _declared_methods().items():
            expected = methods | {"HEAD"} if "GET" in methods else methods
            unused = next(m for m in ("PATCH", "TRACE", "PUT", "DELETE") if m not in methods)
            response = client.request(unused, _filled(template))
            assert response.status_code == 405, (template, unused, response.text)
            allowed: Any = set(response.headers["allow"].split(", "))
            assert allowed == expected, template
