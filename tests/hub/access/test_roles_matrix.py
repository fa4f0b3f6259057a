"""Every route of the hub, classified: public, for machine clients, or for people with
the roles that may use it. The matrix is checked against the running hub on both
databases, and a route that is not classified here fails the test: a new route must
say who may call it.

Object-level checks (one department's requests, grants and items) are tested where
the objects are: test_access_requests.py, test_registry_stewards.py.
"""

from collections.abc import Iterator

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import compile_path

from onceonly.hub.app import create_app
from onceonly.hub.console import admin, citizen, oidc_sign_in
from onceonly.hub.console.auditor import router as auditor_router
from onceonly.hub.console.endpoints import router as console_router
from onceonly.hub.console.steward import router as steward_router

from tests.hub_testing import (
    DATABASES,
    RunningHub,
    audit_entry_for,
    catalogue_hub,
    problem_type,
    running_hub,
    signed_in,
    steward,
)

NO_ID = "0" * 32
PUBLIC = "public"
MACHINE = "machine"
SCRAPER = "the metrics token"  # keys/metrics-token, Prometheus's (decision 0063)
ANY_PERSON = frozenset({"administrator", "auditor", "steward"})
STEWARDS = frozenset({"steward"})
AUDITORS = frozenset({"auditor"})
ADMINISTRATORS = frozenset({"administrator"})
STEWARDS_AND_AUDITORS = frozenset({"steward", "auditor"})
BREAK_GLASS_ONLY: frozenset[str] = frozenset()
AUDITORS_AND_ADMINISTRATORS = frozenset({"auditor", "administrator"})

# (method, path) -> PUBLIC, MACHINE, or the roles that may call it. "steward" means
# a steward of *some* department: which department's objects they may touch is the
# object-level check, tested beside the objects.
ROUTES: dict[tuple[str, str], str | frozenset[str]] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): SCRAPER,
    ("POST", "/oauth/token"): MACHINE,
    ("POST", "/oauth/introspect"): MACHINE,
    ("POST", "/oauth/revoke"): MACHINE,
    ("GET", "/.well-known/oauth-authorization-server"): PUBLIC,
    ("GET", "/.well-known/jwks.json"): PUBLIC,
    ("GET", "/v1/clients/self"): MACHINE,
    ("PUT", "/v1/clients/self/jwks"): MACHINE,
    ("GET", "/v1/items"): PUBLIC,
    ("GET", "/v1/items/{item_id}"): PUBLIC,
    ("GET", "/v1/items/{item_id}/versions"): PUBLIC,
    ("GET", "/v1/items/{item_id}/versions/{version}"): PUBLIC,
    ("GET", "/v1/items/{item_id}/openapi.json"): PUBLIC,
    ("POST", "/v1/items/{item_id}/records/query"): MACHINE,
    ("GET", "/v1/admin/departments"): ADMINISTRATORS,
    ("GET", "/v1/admin/departments/{department_id}"): ADMINISTRATORS,
    ("PUT", "/v1/admin/departments/{department_id}"): ADMINISTRATORS,
    ("GET", "/v1/admin/clients"): ADMINISTRATORS,
    ("GET", "/v1/admin/clients/{client_id}"): ADMINISTRATORS,
    ("PUT", "/v1/admin/clients/{client_id}"): ADMINISTRATORS,
    ("POST", "/v1/admin/clients/{client_id}/disable"): ADMINISTRATORS,
    ("POST", "/v1/admin/clients/{client_id}/enable"): ADMINISTRATORS,
    ("PUT", "/v1/admin/items/{item_id}"): STEWARDS,
    ("POST", "/v1/admin/items/{item_id}/versions"): STEWARDS,
    ("POST", "/v1/admin/items/{item_id}/deprecate"): STEWARDS,
    ("POST", "/v1/admin/items/{item_id}/retire"): STEWARDS,
    ("GET", "/v1/admin/registry-changes"): ANY_PERSON,
    ("GET", "/v1/admin/registry-changes/{change_id}"): ANY_PERSON,
    ("POST", "/v1/admin/registry-changes/{change_id}/approve"): ADMINISTRATORS,
    ("POST", "/v1/admin/registry-changes/{change_id}/refuse"): ADMINISTRATORS,
    ("GET", "/v1/admin/grants"): BREAK_GLASS_ONLY,
    ("POST", "/v1/admin/grants"): BREAK_GLASS_ONLY,
    ("POST", "/v1/admin/grants/{grant_id}/revoke"): BREAK_GLASS_ONLY,
    ("GET", "/v1/access-requests"): STEWARDS_AND_AUDITORS,
    ("POST", "/v1/access-requests"): STEWARDS,
    ("GET", "/v1/access-requests/{request_id}"): STEWARDS_AND_AUDITORS,
    ("POST", "/v1/access-requests/{request_id}/approve"): STEWARDS,
    ("POST", "/v1/access-requests/{request_id}/refuse"): STEWARDS,
    ("POST", "/v1/access-requests/{request_id}/withdraw"): STEWARDS,
    ("GET", "/v1/grants"): STEWARDS_AND_AUDITORS,
    ("GET", "/v1/grants/{grant_id}"): STEWARDS_AND_AUDITORS,
    ("POST", "/v1/grants/{grant_id}/revoke"): STEWARDS,
    ("POST", "/v1/grants/{grant_id}/renew"): STEWARDS,
    ("GET", "/v1/purposes"): PUBLIC,
    ("GET", "/v1/audit/checkpoint"): PUBLIC,
    ("GET", "/v1/audit/verifier-key"): PUBLIC,
    ("GET", "/v1/audit/checkpoints"): PUBLIC,
    ("GET", "/v1/audit/proof/inclusion"): PUBLIC,
    ("GET", "/v1/audit/proof/consistency"): PUBLIC,
    ("GET", "/v1/audit/leaves"): PUBLIC,
    ("GET", "/v1/audit/entries/{index}"): PUBLIC,
    ("GET", "/v1/audit/entries"): AUDITORS,
    ("GET", "/v1/audit/department-entries"): MACHINE,
    ("GET", "/v1/audit/export"): AUDITORS,
    ("GET", "/v1/reports/efficiency"): AUDITORS_AND_ADMINISTRATORS,
    ("GET", "/v1/reports/efficiency/export"): AUDITORS_AND_ADMINISTRATORS,
    ("POST", "/v1/items/{item_id}/events"): MACHINE,
    ("PUT", "/v1/items/{item_id}/subscription"): MACHINE,
    ("DELETE", "/v1/items/{item_id}/subscription"): MACHINE,
    ("GET", "/v1/admin/events/deliveries"): ADMINISTRATORS,
    ("POST", "/v1/admin/events/deliveries/{delivery_id}/replay"): ADMINISTRATORS,
    ("POST", "/v1/citizen/access-log"): MACHINE,
    ("POST", "/v1/people/sign-in"): PUBLIC,
    ("POST", "/v1/people/sign-out"): ANY_PERSON,
    ("GET", "/v1/people/me"): ANY_PERSON,
    ("POST", "/v1/people/me/password"): ANY_PERSON,
    ("POST", "/v1/people/me/totp"): ANY_PERSON,
    ("POST", "/v1/people/me/totp/confirm"): ANY_PERSON,
    ("GET", "/v1/people/oidc/start"): PUBLIC,
    ("GET", "/v1/people/oidc/callback"): PUBLIC,
    ("POST", "/v1/people/oidc/token"): PUBLIC,
    ("GET", "/v1/admin/people"): ADMINISTRATORS,
    ("GET", "/v1/admin/people/{username}"): ADMINISTRATORS,
    ("PUT", "/v1/admin/people/{username}"): ADMINISTRATORS,
}
PARAMETERS = {
    "item_id": "person.identity",
    "version": "1",
    "department_id": "tax",
    "client_id": "no-such-client",
    "grant_id": NO_ID,
    "request_id": NO_ID,
    "change_id": NO_ID,
    "delivery_id": NO_ID,
    "index": "0",
    "username": "no-such-person",
}
PEOPLE_ROUTES = sorted(
    (route, roles) for route, roles in ROUTES.items() if isinstance(roles, frozenset)
)
# Signing out would end the shared sign-ins of the other cases; tested in test_people.py.
SIGN_OUT = ("POST", "/v1/people/sign-out")
MACHINE_ROUTES = sorted(route for route, kind in ROUTES.items() if kind == MACHINE)


def route_id(value: object) -> str:
    """Stable test ids (a frozenset's order differs between xdist workers)."""
    if isinstance(value, tuple):
        return f"{value[0]} {value[1]}"
    return "-".join(sorted(value)) if isinstance(value, frozenset) else str(value)


def concrete(path: str) -> str:
    for name, value in PARAMETERS.items():
        path = path.replace("{" + name + "}", value)
    return path


def test_every_route_is_classified() -> None:
    paths = create_app().openapi()["paths"]
    served = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert served - set(ROUTES) == set(), "classify these routes in ROUTES"
    assert set(ROUTES) - served == set(), "these classified routes no longer exist"


@pytest.fixture(scope="module", params=DATABASES)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    with catalogue_hub(request, tmp_path_factory) as hub:
        yield hub


@pytest.fixture(scope="module")
def people(hub: RunningHub) -> dict[str, dict[str, str]]:
    """One person per role; the steward stewards a department that no object here has."""
    return {
        "administrator": signed_in(hub, "matrix-admin", {"role": "administrator"}),
        "auditor": signed_in(hub, "matrix-auditor", {"role": "auditor"}),
        "steward": signed_in(hub, "matrix-steward", steward("education")),
    }


def call(
    hub: RunningHub, route: tuple[str, str], headers: dict[str, str] | None = None
) -> httpx.Response:
    method, path = route
    body = {} if method in ("POST", "PUT") else None
    return httpx.request(method, hub.url + concrete(path), json=body, headers=headers or {})


@pytest.mark.parametrize(("route", "roles"), PEOPLE_ROUTES, ids=route_id)
def test_people_routes_refuse_callers_who_are_not_signed_in(
    hub: RunningHub, route: tuple[str, str], roles: frozenset[str]
) -> None:
    for headers in ({}, {"Authorization": "Bearer oop_forged"}, {"Authorization": "Basic eDp5"}):
        response = call(hub, route, headers)
        assert response.status_code == 401, (headers, response.text)
        assert problem_type(response) == "not-signed-in"


@pytest.mark.parametrize(
    ("route", "roles"), [case for case in PEOPLE_ROUTES if case[0] != SIGN_OUT], ids=route_id
)
def test_people_routes_refuse_every_other_role(
    hub: RunningHub,
    people: dict[str, dict[str, str]],
    route: tuple[str, str],
    roles: frozenset[str],
) -> None:
    for role, headers in people.items():
        response = call(hub, route, headers)
        if role in roles:  # past the role check; a department's objects are checked later
            assert response.status_code != 401, (role, response.text)
            if response.status_code == 403:
                assert problem_type(response) == "not-steward", (role, response.text)
        else:
            assert response.status_code == 403, (role, response.text)
            assert problem_type(response) in ("forbidden", "not-steward")


@pytest.mark.parametrize("route", MACHINE_ROUTES, ids=route_id)
def test_machine_routes_refuse_a_persons_token(
    hub: RunningHub, people: dict[str, dict[str, str]], route: tuple[str, str]
) -> None:
    """Resource routes refuse it as an access token; the OAuth endpoints, which
    authenticate clients by a signed assertion, refuse it as one."""
    path = route[1]
    for headers in people.values():
        if path.startswith("/oauth/"):
            token = headers["Authorization"].removeprefix("Bearer ")
            form = {
                "grant_type": "client_credentials",
                "client_id": "social-welfare-adapter",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": token,
                "token": token,
            }
            response = httpx.post(hub.url + path, data=form)
            assert response.status_code == 401, response.text
            assert problem_type(response) == "oauth-invalid-client"
            # and beside the assertion, as a header: two methods (RFC 6749 §2.3)
            response = httpx.post(hub.url + path, data=form, headers=headers)
            assert response.status_code == 400, response.text
            assert problem_type(response) == "oauth-invalid-request"
        else:
            response = call(hub, route, headers)
            assert response.status_code == 401, response.text
            assert problem_type(response) == "invalid-token"


PEOPLE_READS = [route for route, _ in PEOPLE_ROUTES if route[0] == "GET"]
# Reads with an audited action of their own; every other read of a person's is written
# as route.read when the break-glass token's is answered, route.refused when refused.
READ_ACTIONS = {
    "/v1/audit/entries": "audit.query",
    "/v1/audit/export": "audit.export",
    "/v1/reports/efficiency": "report.efficiency",
    "/v1/reports/efficiency/export": "report.export",
}


@pytest.mark.parametrize("route", PEOPLE_READS, ids=route_id)
def test_every_read_of_the_break_glass_token_is_audited(
    hub: RunningHub, route: tuple[str, str]
) -> None:
    """Every use of the token is an entry (decision 0014), an answered read too
    (decision 0090): before, a read answered 200 left none."""
    response = call(hub, route, {"Authorization": f"Bearer {hub.keys.admin_token}"})
    assert response.status_code != 401, response.text
    refused = response.status_code >= 400
    action = READ_ACTIONS.get(route[1], "route.refused" if refused else "route.read")
    entry = audit_entry_for(hub, response, action=action)
    assert entry["outcome"] == ("refused" if refused else "ok")
    assert (entry["person"], entry["client"]) == ("break-glass", "administrator")
    if action.startswith("route."):
        assert entry["target"] == f"GET {route[1]}"


def test_a_persons_answered_read_is_not_written(
    hub: RunningHub, people: dict[str, dict[str, str]]
) -> None:
    """Only the break-glass token's reads are: a person's read of requests and grants is
    the person's work, not an emergency."""
    response = httpx.get(f"{hub.url}/v1/grants", headers=people["auditor"])
    assert response.status_code == 200
    with pytest.raises(AssertionError, match=r"no route\.read audit entry"):
        audit_entry_for(hub, response, action="route.read")


def test_the_break_glass_token_may_set_up_but_is_refused_when_turned_off(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data_dir = tmp_path_factory.mktemp("off")
    url = f"sqlite:///{data_dir / 'hub.db'}"
    with running_hub(database_url=url, data_dir=data_dir, break_glass_token=False) as hub:
        response = httpx.get(
            f"{hub.url}/v1/admin/people",
            headers={"Authorization": f"Bearer {hub.keys.admin_token}"},
        )
        assert response.status_code == 401
        assert problem_type(response) == "not-signed-in"
        assert "break-glass token is turned off" in response.json()["detail"]


def test_a_refused_read_is_audited_too(hub: RunningHub, people: dict[str, dict[str, str]]) -> None:
    response = httpx.get(f"{hub.url}/v1/admin/people", headers=people["steward"])
    assert response.status_code == 403
    entry = audit_entry_for(hub, response, action="route.refused")
    assert (entry["outcome"], entry["reason"]) == ("refused", "forbidden")
    assert (entry["person"], entry["target"]) == ("matrix-steward", "GET /v1/admin/people")
    anonymous = httpx.get(f"{hub.url}/v1/grants")
    entry = audit_entry_for(hub, anonymous, action="route.refused")
    assert (entry["reason"], entry["target"]) == ("not-signed-in", "GET /v1/grants")


# The web console (onceonly.hub.console): cookie-authenticated HTML pages, out of the
# OpenAPI document, so classified here on their own. A page for people sends a visitor
# without a live sign-in to the sign-in page (303), whatever the method; every POST also
# needs its CSRF token (tests/hub/console). Which role sees what on a page is tested in
# tests/hub/console/test_console_http.py.
CONSOLE_ROUTES: dict[tuple[str, str], str | frozenset[str]] = {
    ("GET", "/sign-in"): PUBLIC,
    ("POST", "/sign-in"): PUBLIC,
    ("GET", "/language/{code}"): PUBLIC,
    ("GET", "/assets/{name}"): PUBLIC,
    ("GET", "/"): ANY_PERSON,
    ("GET", "/account"): ANY_PERSON,
    ("GET", "/catalogue"): ANY_PERSON,
    ("GET", "/catalogue/{item_id}"): ANY_PERSON,
    ("POST", "/sign-out"): ANY_PERSON,
}


def test_every_console_route_is_classified() -> None:
    served = {
        (method, route.path)
        for route in console_router.routes
        if isinstance(route, APIRoute)
        for method in route.methods - {"HEAD"}  # HEAD answers as GET does
    }
    assert served == set(CONSOLE_ROUTES)


# Signing in with OpenID Connect (console.oidc_sign_in) and the citizen's page
# (console.citizen, decision 0032): the starts and callbacks are public; CITIZEN routes
# read only a citizen's own sign-in, never a person's (a person's session sees the
# citizen's sign-in page), and a citizen's sign-in opens no page above
# (tests/hub/console/test_citizen_pages.py).
CITIZEN = "citizen"
CONSOLE_OIDC_ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/sign-in/oidc"): PUBLIC,
    ("GET", "/sign-in/oidc/callback"): PUBLIC,
    # A command-line sign-in's confirmation (decision 0095): the waiting sign-in's own
    # cookie and form token are its gate, not a session.
    ("GET", "/sign-in/oidc/command-line"): PUBLIC,
    ("POST", "/sign-in/oidc/command-line"): PUBLIC,
    ("GET", "/citizen/sign-in"): PUBLIC,
    ("GET", "/citizen/sign-in/callback"): PUBLIC,
    ("GET", "/citizen"): CITIZEN,
    ("POST", "/citizen/sign-out"): CITIZEN,
}


def test_every_console_oidc_and_citizen_route_is_classified() -> None:
    served = {
        (method, route.path)
        for route in [*oidc_sign_in.router.routes, *citizen.router.routes]
        if isinstance(route, APIRoute)
        for method in route.methods - {"HEAD"}  # HEAD answers as GET does
    }
    assert served == set(CONSOLE_OIDC_ROUTES)


@pytest.mark.parametrize(
    "route", sorted(r for r, kind in CONSOLE_ROUTES.items() if kind == ANY_PERSON), ids=route_id
)
def test_console_pages_send_a_visitor_without_a_sign_in_to_the_sign_in_page(
    hub: RunningHub, route: tuple[str, str]
) -> None:
    method, path = route
    for cookies in ({}, {"onceonly-console": "oop_forged"}):
        response = httpx.request(
            method, hub.url + concrete(path), cookies=cookies, data={"csrf_token": "x"}
        )
        assert response.status_code == 303, response.text
        assert response.headers["location"].startswith("/sign-in")


# The stewards' pages (console.steward): for a steward of some department, as the API's
# StewardDep; an auditor reads a request's and a grant's page, as GET /v1/access-requests
# and /v1/grants allow, and changes nothing. Which department's requests, grants and
# items a steward may touch is tested in tests/hub/console/test_steward_pages.py.
CONSOLE_STEWARD_ROUTES: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/inbox"): STEWARDS,
    ("GET", "/outbox"): STEWARDS,
    ("GET", "/requests/{request_id}"): STEWARDS_AND_AUDITORS,
    ("POST", "/requests/{request_id}/approve"): STEWARDS,
    ("POST", "/requests/{request_id}/refuse"): STEWARDS,
    ("POST", "/requests/{request_id}/withdraw"): STEWARDS,
    ("GET", "/catalogue/{item_id}/request"): STEWARDS,
    ("POST", "/catalogue/{item_id}/request"): STEWARDS,
    ("GET", "/grants"): STEWARDS,
    ("GET", "/grants/{grant_id}"): STEWARDS_AND_AUDITORS,
    ("POST", "/grants/{grant_id}/revoke"): STEWARDS,
    ("GET", "/register"): STEWARDS,
    ("POST", "/register"): STEWARDS,
    ("GET", "/catalogue/{item_id}/versions/new"): STEWARDS,
    ("POST", "/catalogue/{item_id}/versions/new"): STEWARDS,
    ("GET", "/catalogue/{item_id}/lifecycle"): STEWARDS,
    ("POST", "/catalogue/{item_id}/deprecate"): STEWARDS,
    ("POST", "/catalogue/{item_id}/retire"): STEWARDS,
}


def test_every_console_steward_route_is_classified() -> None:
    served = {
        (method, route.path)
        for route in steward_router.routes
        if isinstance(route, APIRoute)
        for method in route.methods - {"HEAD"}  # HEAD answers as GET does
    }
    assert served == set(CONSOLE_STEWARD_ROUTES)


@pytest.mark.parametrize("route", sorted(CONSOLE_STEWARD_ROUTES), ids=route_id)
def test_console_steward_pages_send_a_visitor_without_a_sign_in_to_the_sign_in_page(
    hub: RunningHub, route: tuple[str, str]
) -> None:
    method, path = route
    response = httpx.request(method, hub.url + concrete(path), data={"csrf_token": "x"})
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith("/sign-in")


# The administrators' pages (console.admin): administrators only, as the API's
# AdministratorDep (the break-glass token is no console sign-in). Each change, its audit
# entry and the refusal of every other role (403, audited) are tested in
# tests/hub/console/test_admin_pages.py.
CONSOLE_ADMIN_ROUTES: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/admin/departments"): ADMINISTRATORS,
    ("GET", "/admin/new-department"): ADMINISTRATORS,
    ("POST", "/admin/new-department"): ADMINISTRATORS,
    ("GET", "/admin/departments/{department_id}"): ADMINISTRATORS,
    ("GET", "/admin/departments/{department_id}/edit"): ADMINISTRATORS,
    ("POST", "/admin/departments/{department_id}/edit"): ADMINISTRATORS,
    ("GET", "/admin/clients"): ADMINISTRATORS,
    ("GET", "/admin/clients/{client_id}"): ADMINISTRATORS,
    ("GET", "/admin/clients/{client_id}/disable"): ADMINISTRATORS,
    ("POST", "/admin/clients/{client_id}/disable"): ADMINISTRATORS,
    ("POST", "/admin/clients/{client_id}/enable"): ADMINISTRATORS,
    ("GET", "/admin/people"): ADMINISTRATORS,
    ("GET", "/admin/new-person"): ADMINISTRATORS,
    ("POST", "/admin/new-person"): ADMINISTRATORS,
    ("GET", "/admin/people/{username}"): ADMINISTRATORS,
    ("GET", "/admin/people/{username}/edit"): ADMINISTRATORS,
    ("POST", "/admin/people/{username}/edit"): ADMINISTRATORS,
    ("GET", "/admin/people/{username}/disable"): ADMINISTRATORS,
    ("POST", "/admin/people/{username}/disable"): ADMINISTRATORS,
    ("POST", "/admin/people/{username}/enable"): ADMINISTRATORS,
    ("GET", "/admin/dead-letters"): ADMINISTRATORS,
    ("POST", "/admin/dead-letters/{delivery_id}/replay"): ADMINISTRATORS,
    ("GET", "/admin/signing-keys"): ADMINISTRATORS,
}


def test_every_console_administrator_route_is_classified() -> None:
    served = {
        (method, route.path)
        for route in admin.router.routes
        if isinstance(route, APIRoute)
        for method in route.methods - {"HEAD"}  # HEAD answers as GET does
    }
    assert served == set(CONSOLE_ADMIN_ROUTES)


@pytest.mark.parametrize("route", sorted(CONSOLE_ADMIN_ROUTES), ids=route_id)
def test_console_administrator_pages_send_a_visitor_without_a_sign_in_to_the_sign_in_page(
    hub: RunningHub, route: tuple[str, str]
) -> None:
    method, path = route
    for cookies in ({}, {"onceonly-console": "oop_forged"}):
        response = httpx.request(
            method, hub.url + concrete(path), cookies=cookies, data={"csrf_token": "x"}
        )
        assert response.status_code == 303, response.text
        assert response.headers["location"].startswith("/sign-in")


# The auditors' pages (console.auditor) have the API's roles: the log's entries for
# auditors only, the efficiency dashboard for auditors and administrators, the checkpoint
# history (public in the API) for every person. A refused role gets 403 and an audited
# refusal (tests/hub/console/test_auditor_pages.py).
CONSOLE_AUDITOR_ROUTES: dict[tuple[str, str], str | frozenset[str]] = {
    ("GET", "/audit"): AUDITORS,
    ("POST", "/audit"): AUDITORS,
    ("POST", "/audit/export"): AUDITORS,
    ("GET", "/audit/entries/{index}"): AUDITORS,
    ("GET", "/checkpoints"): ANY_PERSON,
    ("GET", "/efficiency"): AUDITORS_AND_ADMINISTRATORS,
}


def test_every_console_auditor_route_is_classified() -> None:
    served = {
        (method, route.path)
        for route in auditor_router.routes
        if isinstance(route, APIRoute)
        for method in route.methods - {"HEAD"}  # HEAD answers as GET does
    }
    assert served == set(CONSOLE_AUDITOR_ROUTES)


@pytest.mark.parametrize("route", sorted(CONSOLE_AUDITOR_ROUTES), ids=route_id)
def test_the_auditors_pages_send_a_visitor_without_a_sign_in_to_the_sign_in_page(
    hub: RunningHub, route: tuple[str, str]
) -> None:
    method, path = route
    for cookies in ({}, {"onceonly-console": "oop_forged"}):
        response = httpx.request(
            method, hub.url + concrete(path), cookies=cookies, data={"csrf_token": "x"}
        )
        assert response.status_code == 303, response.text
        assert response.headers["location"].startswith("/sign-in")


def test_no_console_path_is_also_an_api_path() -> None:
    """The console's routes are tried after the API's (onceonly.hub.app installs them
    last): that order changes no answer only while no path can reach both."""
    console = {
        path
        for table in (
            CONSOLE_ROUTES,
            CONSOLE_OIDC_ROUTES,
            CONSOLE_STEWARD_ROUTES,
            CONSOLE_ADMIN_ROUTES,
            CONSOLE_AUDITOR_ROUTES,
        )
        for _, path in table
    }
    api = {path for _, path in ROUTES}
    both = {
        (page, route)
        for page in console
        for route in api
        if compile_path(route)[0].match(concrete(page))
        or compile_path(page)[0].match(concrete(route))
    }
    assert both == set()
