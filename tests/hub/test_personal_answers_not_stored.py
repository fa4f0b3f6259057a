"""Answers that carry personal data say no cache may keep them (RFC 9111 §5.2.2.5), and
every answer says it is to be read as the type it is labelled (``nosniff``).

A record query's 200, the citizen portal's access log, and the audit entries' answers
had no ``Cache-Control``: a browser's or a forward proxy's cache could keep a person's
address. The hub and the owner's adapter run as real servers on loopback, on SQLite
and PostgreSQL.
"""

from collections.abc import Iterator

import httpx
import pytest
from joserfc.jwk import ECKey

from onceonly.adapters import DPoPKey, public_jwks

from tests.hub.exchange_world import (
    ADDRESS,
    PURPOSE,
    SUBJECT,
    World,
    access_token,
    module_exchange_world,
)
from tests.hub_testing import DATABASES

PORTAL = "citizen-portal"
DPOP = DPoPKey.generate()


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with module_exchange_world(request, tmp_path_factory, citizen_portal_clients=[PORTAL]) as built:
        yield built


def dpop_post(world: World, path: str, token: str, body: dict[str, object]) -> httpx.Response:
    url = f"{world.hub.url}{path}"
    return httpx.post(url, json=body, headers=DPOP.headers("POST", url, token))


def assert_not_stored(answer: httpx.Response) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_a_record_is_answered_no_store(world: World) -> None:
    token = access_token(world, DPOP)
    path = f"/v1/items/{ADDRESS}/records/query"
    assert_not_stored(dpop_post(world, path, token, {"subject": SUBJECT, "purpose": PURPOSE}))


def test_the_citizen_access_log_is_answered_no_store(world: World) -> None:
    key = ECKey.generate_key("P-256", auto_kid=True)
    with world.hub.admin() as admin:
        admin.put_department("portal", name="State portal")
        admin.put_client(PORTAL, department="portal", jwks=public_jwks(key))
    token = access_token(world, DPOP, client_id=PORTAL, key=key)
    assert_not_stored(dpop_post(world, "/v1/citizen/access-log", token, {"subject": SUBJECT}))


@pytest.mark.parametrize(
    "path",
    [
        "/v1/audit/entries/0",
        "/v1/audit/entries?limit=5",
        "/v1/audit/leaves?limit=5",
        "/v1/audit/export?format=jsonl",
    ],
)
def test_audit_entries_are_answered_no_store(world: World, path: str) -> None:
    admin = {"Authorization": f"Bearer {world.hub.keys.admin_token}"}
    assert_not_stored(httpx.get(f"{world.hub.url}{path}", headers=admin))


@pytest.mark.parametrize("path", ["/healthz", "/v1/no-such-route", "/.well-known/jwks.json"])
def test_every_answer_is_nosniff_once(world: World, path: str) -> None:
    answer = httpx.get(f"{world.hub.url}{path}")
    assert answer.headers.get_list("x-content-type-options") == ["nosniff"]


def test_the_console_keeps_its_own_nosniff_once(world: World) -> None:
    answer = httpx.get(f"{world.hub.url}/sign-in")
    assert answer.headers.get_list("x-content-type-options") == ["nosniff"]


@pytest.mark.parametrize(
    "path", ["/v1/admin/people", "/v1/people/me", "/v1/admin/grants", "/v1/items", "/v1/nothing"]
)
def test_every_api_answer_is_no_store_unless_its_route_says_otherwise(
    world: World, path: str
) -> None:
    """Staff names and roles, grants, and every other /v1 answer are the caller's own:
    an API answer without a Cache-Control of its route's is no-store (a hostile review:
    /v1/admin/people and /v1/people/me had none)."""
    admin = {"Authorization": f"Bearer {world.hub.keys.admin_token}"}
    answer = httpx.get(f"{world.hub.url}{path}", headers=admin)
    assert answer.headers.get_list("cache-control") == ["no-store"]


def test_a_public_document_keeps_its_own_caching(world: World) -> None:
    answer = httpx.get(f"{world.hub.url}/.well-known/jwks.json")
    assert answer.headers.get_list("cache-control") == ["public, max-age=60"]
