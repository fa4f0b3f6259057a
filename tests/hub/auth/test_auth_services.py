"""Token services: introspection (RFC 7662), revocation (RFC 7009), server nonces
(RFC 9449 §8, §9), a client's own registration; on SQLite and PostgreSQL.

Departments only ever see their own: OWASP API1 (object level authorization) and
API5 (function level authorization) are asserted here too.
"""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey

from onceonly.adapters import AuthenticationFailed, DPoPKey, HubClient, public_jwks
from onceonly.hub.cli.admin_client import AdminError

from tests.hub.exchange_world import (
    ADDRESS,
    CONSUMER,
    CONSUMER_CLIENT,
    PURPOSE,
    SUBJECT,
    World,
    client_form,
    module_exchange_world,
)
from tests.hub_testing import DATABASES, added_audit_entries, audit_entry_for, problem_type

OTHER_CLIENT, OTHER_DEPARTMENT = "tax-adapter", "tax"


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """One world per module and database: tests find their audit entries by request id,
    and a test that changes a client's keys does it to a client of its own."""
    with module_exchange_world(request, tmp_path_factory) as built:
        yield built


def consumer_client(world: World, client_id: str, key: ECKey) -> HubClient:
    """A new client of the consumer department (its grants are the department's)."""
    with world.hub.admin() as admin:
        admin.put_client(client_id, department=CONSUMER, jwks=public_jwks(key))
    return HubClient(world.hub.url, client_id=client_id, key=key, retries=0)


def token(world: World, client_id: str, key: ECKey, dpop: DPoPKey) -> str:
    url = f"{world.hub.url}/oauth/token"
    form = client_form(world, client_id, key, grant_type="client_credentials")
    response = httpx.post(url, data=form, headers={"DPoP": dpop.proof("POST", url)})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def other_department(world: World) -> ECKey:
    key = ECKey.generate_key("P-256", auto_kid=True)
    with world.hub.admin() as admin:
        admin.put_client(OTHER_CLIENT, department=OTHER_DEPARTMENT, jwks=public_jwks(key))
    return key


def introspect(world: World, client_id: str, key: ECKey, subject_token: str) -> httpx.Response:
    form = client_form(world, client_id, key, token=subject_token)
    return httpx.post(f"{world.hub.url}/oauth/introspect", data=form)


def revoke(world: World, client_id: str, key: ECKey, subject_token: str) -> httpx.Response:
    form = client_form(world, client_id, key, token=subject_token, token_type_hint="access_token")
    return httpx.post(f"{world.hub.url}/oauth/revoke", data=form)


def query(world: World, access_token: str, dpop: DPoPKey) -> httpx.Response:
    url = f"{world.hub.url}/v1/items/{ADDRESS}/records/query"
    body = {"subject": SUBJECT, "purpose": PURPOSE}
    return httpx.post(url, json=body, headers=dpop.headers("POST", url, access_token))


# --- introspection (RFC 7662) -----------------------------------------------------------


def test_introspection_describes_an_own_token(world: World) -> None:
    dpop = DPoPKey.generate()
    access = token(world, CONSUMER_CLIENT, world.consumer_key, dpop)
    response = introspect(world, CONSUMER_CLIENT, world.consumer_key, access)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["active"] is True
    assert (body["client_id"], body["department"], body["token_type"]) == (
        CONSUMER_CLIENT,
        CONSUMER,
        "DPoP",
    )
    assert body["cnf"] == {"jkt": dpop.thumbprint}
    assert body["scope"] == f"audit:read read:{ADDRESS}"
    assert body["iss"] == world.hub.settings.issuer
    assert body["exp"] > body["iat"]
    entry = audit_entry_for(world.hub, response, action="token.introspect")
    assert (entry["outcome"], entry["client"]) == ("ok", CONSUMER_CLIENT)


@pytest.mark.parametrize("what", ["garbage", "expired-forgery", "another-departments-token"])
def test_introspection_of_anything_else_is_inactive(world: World, what: str) -> None:
    other_key = other_department(world)
    subject_token = {
        "garbage": "a.b.c",
        "expired-forgery": jwt.encode({"alg": "ES256"}, {"exp": 1}, other_key),
        "another-departments-token": token(world, OTHER_CLIENT, other_key, DPoPKey.generate()),
    }[what]
    response = introspect(world, CONSUMER_CLIENT, world.consumer_key, subject_token)
    assert response.status_code == 200, response.text
    assert response.json() == {"active": False}


def test_introspection_needs_client_authentication(world: World) -> None:
    """Without credentials the request names no client: refused, and not audited (a
    decision about nobody); naming a client that fails is audited."""
    access = token(world, CONSUMER_CLIENT, world.consumer_key, DPoPKey.generate())
    response = httpx.post(f"{world.hub.url}/oauth/introspect", data={"token": access})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    with pytest.raises(AssertionError, match=r"no token\.introspect audit entry"):
        audit_entry_for(world.hub, response, action="token.introspect")
    named = httpx.post(
        f"{world.hub.url}/oauth/introspect", data={"token": access, "client_id": CONSUMER_CLIENT}
    )
    assert named.status_code == 401
    entry = audit_entry_for(world.hub, named, action="token.introspect")
    assert (entry["outcome"], entry["reason"]) == ("refused", "oauth-invalid-client")


def test_introspection_without_a_token_parameter_is_invalid_request(world: World) -> None:
    form = client_form(world, CONSUMER_CLIENT, world.consumer_key)
    response = httpx.post(f"{world.hub.url}/oauth/introspect", data=form)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


# --- revocation (RFC 7009) --------------------------------------------------------------


def test_revoked_token_is_refused_at_once_and_inactive(world: World) -> None:
    dpop = DPoPKey.generate()
    access = token(world, CONSUMER_CLIENT, world.consumer_key, dpop)
    assert query(world, access, dpop).status_code == 200
    response = revoke(world, CONSUMER_CLIENT, world.consumer_key, access)
    assert response.status_code == 200, response.text
    entry = audit_entry_for(world.hub, response, action="token.revoke")
    assert (entry["outcome"], entry["client"]) == ("ok", CONSUMER_CLIENT)
    refused = query(world, access, dpop)
    assert refused.status_code == 401
    assert problem_type(refused) == "invalid-token"
    assert "revoked" in refused.json()["detail"]
    introspected = introspect(world, CONSUMER_CLIENT, world.consumer_key, access).json()
    assert introspected == {"active": False}
    assert revoke(world, CONSUMER_CLIENT, world.consumer_key, access).status_code == 200


def test_a_department_cannot_revoke_another_departments_token(world: World) -> None:
    dpop = DPoPKey.generate()
    access = token(world, CONSUMER_CLIENT, world.consumer_key, dpop)
    other_key = other_department(world)
    response = revoke(world, OTHER_CLIENT, other_key, access)
    assert response.status_code == 200  # RFC 7009 §2.2: says nothing about the token
    assert query(world, access, dpop).status_code == 200
    entry = audit_entry_for(world.hub, response, action="token.revoke")
    assert (entry["client"], entry["reason"]) == (OTHER_CLIENT, "not-revoked")


def test_revoked_token_is_refused_by_client_endpoints_too(world: World) -> None:
    dpop = DPoPKey.generate()
    access = token(world, CONSUMER_CLIENT, world.consumer_key, dpop)
    url = f"{world.hub.url}/v1/clients/self"
    assert httpx.get(url, headers=dpop.headers("GET", url, access)).status_code == 200
    revoke(world, CONSUMER_CLIENT, world.consumer_key, access)
    response = httpx.get(url, headers=dpop.headers("GET", url, access))
    assert response.status_code == 401
    assert problem_type(response) == "invalid-token"


# --- a client's own registration --------------------------------------------------------


def test_a_client_reads_its_own_registration(world: World) -> None:
    dpop = DPoPKey.generate()
    access = token(world, CONSUMER_CLIENT, world.consumer_key, dpop)
    url = f"{world.hub.url}/v1/clients/self"
    body = httpx.get(url, headers=dpop.headers("GET", url, access)).json()
    assert body == {
        "client_id": CONSUMER_CLIENT,
        "department": CONSUMER,
        "kids": [world.consumer_key.kid],
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", f"/v1/clients/{OTHER_CLIENT}/jwks"),
        ("GET", f"/v1/clients/{OTHER_CLIENT}"),
        ("PUT", f"/v1/admin/clients/{OTHER_CLIENT}"),
        ("GET", "/v1/admin/grants"),
        ("POST", "/v1/admin/grants"),
    ],
)
def test_a_client_cannot_reach_another_departments_clients_or_grants(
    world: World, method: str, path: str
) -> None:
    other_department(world)
    dpop = DPoPKey.generate()
    access = token(world, CONSUMER_CLIENT, world.consumer_key, dpop)
    url = world.hub.url + path
    body: dict[str, Any] = (
        {"consumer": CONSUMER, "item": ADDRESS, "purpose": "any", "legal_basis": "none"}
        if path.endswith("grants")
        else {"department": OTHER_DEPARTMENT, "jwks": public_jwks(world.consumer_key)}
    )
    response = httpx.request(method, url, json=body, headers=dpop.headers(method, url, access))
    assert response.status_code in (401, 404, 405), response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_client_replaces_its_own_keys_and_the_old_one_stops_working(world: World) -> None:
    rotating = "social-welfare-rotating"  # its own client: the others keep their keys
    old_key, new_key = (ECKey.generate_key("P-256", auto_kid=True) for _ in range(2))
    with (
        added_audit_entries(world.hub, action="client.keys.put") as keys_put,
        consumer_client(world, rotating, old_key) as client,
    ):
        kids = client.rotate_key(new_key)
        assert kids == [new_key.kid]
        assert client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE).record
    stale = HubClient(world.hub.url, client_id=rotating, key=old_key, retries=0)
    with stale, pytest.raises(AuthenticationFailed):
        stale.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
    assert [entry["target"] for entry in keys_put] == [rotating, rotating]


@pytest.mark.parametrize(
    "jwks",
    [
        {"keys": []},
        {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]},
        {"keys": [{**ECKey.generate_key("P-256").as_dict(private=True)}]},
        {"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}]},
    ],
    ids=["empty", "symmetric", "private", "not-on-the-curve"],
)
def test_a_client_cannot_register_bad_keys(world: World, jwks: dict[str, Any]) -> None:
    with world.client() as client, pytest.raises(Exception) as refused:  # noqa: PT011
        client.register_keys(jwks)
    assert getattr(refused.value, "status", None) == 422
    with world.client() as client:  # the old key still works
        assert client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE).record


def _public(key: ECKey | OKPKey) -> dict[str, Any]:
    return dict(key.as_dict(private=False))


_EC = _public(ECKey.generate_key("P-256"))
# Keys the hub answered 200 for before decision 0075, each with what the refusal says
OVERSTATED_KEYS: dict[str, tuple[dict[str, Any], str]] = {
    "use-enc": ({**_EC, "use": "enc"}, 'use must be "sig"'),
    "hs256-on-an-ec-key": ({**_EC, "alg": "HS256"}, "alg must be ES256"),
    "x5c-garbage": ({**_EC, "x5c": ["garbage"]}, "leave out x5c"),
    "x5u-elsewhere": ({**_EC, "x5u": "https://evil.example/c.pem"}, "leave out x5u"),
    "jku-elsewhere": ({**_EC, "jku": "https://evil.example/jwks.json"}, "leave out jku"),
    "kid-5000-characters": ({**_EC, "kid": "k" * 5000}, "kid must be 1 to 128"),
    "kid-confusable": ({**_EC, "kid": "k\u0131d"}, "kid must be 1 to 128"),
    "ed25519-all-zero": (
        {**_public(OKPKey.generate_key("Ed25519")), "x": "A" * 43},
        "small order",
    ),
    "ec-x-truncated": ({**_EC, "x": str(_EC["x"])[:40]}, "x must be 32 octets"),
}


@pytest.mark.parametrize(("jwk", "says"), OVERSTATED_KEYS.values(), ids=OVERSTATED_KEYS.keys())
def test_a_client_cannot_register_a_key_that_says_more_than_a_signing_key(
    world: World, jwk: dict[str, Any], says: str
) -> None:
    dpop = DPoPKey.generate()
    access = token(world, CONSUMER_CLIENT, world.consumer_key, dpop)
    url = f"{world.hub.url}/v1/clients/self/jwks"
    body = {"keys": [public_jwks(world.consumer_key)["keys"][0], jwk]}
    response = httpx.put(url, json=body, headers=dpop.headers("PUT", url, access))
    assert response.status_code == 422, response.text
    assert problem_type(response) == "invalid-jwks"
    assert response.json()["detail"].startswith("/keys/1: ")
    assert says in response.json()["detail"]
    with world.client() as client:  # the old key still works
        assert client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE).record


@pytest.mark.parametrize(("jwk", "says"), OVERSTATED_KEYS.values(), ids=OVERSTATED_KEYS.keys())
def test_an_administrator_cannot_register_them_either(
    world: World, jwk: dict[str, Any], says: str
) -> None:
    with world.hub.admin() as admin, pytest.raises(AdminError) as refused:
        admin.put_client("social-welfare-overstated", department=CONSUMER, jwks={"keys": [jwk]})
    assert refused.value.status == 422
    assert says in str(refused.value.problem.get("detail"))


# --- server-provided nonces (RFC 9449 §8, §9) -------------------------------------------


@pytest.fixture(scope="module", params=DATABASES)
def nonce_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with module_exchange_world(request, tmp_path_factory, dpop_nonce=True) as built:
        yield built


def test_token_endpoint_asks_for_its_nonce_first(nonce_world: World) -> None:
    world, dpop = nonce_world, DPoPKey.generate()
    url = f"{world.hub.url}/oauth/token"
    form = client_form(world, CONSUMER_CLIENT, world.consumer_key, grant_type="client_credentials")
    first = httpx.post(url, data=form, headers={"DPoP": dpop.proof("POST", url)})
    assert first.status_code == 400
    assert first.json()["error"] == "use_dpop_nonce"
    nonce = first.headers["dpop-nonce"]
    form = client_form(world, CONSUMER_CLIENT, world.consumer_key, grant_type="client_credentials")
    second = httpx.post(url, data=form, headers={"DPoP": dpop.proof("POST", url, nonce=nonce)})
    assert second.status_code == 200, second.text
    assert second.headers["dpop-nonce"]


def test_resource_asks_for_its_nonce_and_accepts_it(nonce_world: World) -> None:
    world, dpop = nonce_world, DPoPKey.generate()
    url = f"{world.hub.url}/oauth/token"
    form = client_form(world, CONSUMER_CLIENT, world.consumer_key, grant_type="client_credentials")
    nonce = httpx.post(url, data=form, headers={"DPoP": dpop.proof("POST", url)}).headers[
        "dpop-nonce"
    ]
    form = client_form(world, CONSUMER_CLIENT, world.consumer_key, grant_type="client_credentials")
    proof = dpop.proof("POST", url, nonce=nonce)
    access = httpx.post(url, data=form, headers={"DPoP": proof}).json()["access_token"]
    query_url = f"{world.hub.url}/v1/items/{ADDRESS}/records/query"
    body = {"subject": SUBJECT, "purpose": PURPOSE}
    refused = httpx.post(query_url, json=body, headers=dpop.headers("POST", query_url, access))
    assert refused.status_code == 401
    assert 'error="use_dpop_nonce"' in refused.headers["www-authenticate"]
    assert problem_type(refused) == "use-dpop-nonce"
    headers = dpop.headers("POST", query_url, access, nonce=refused.headers["dpop-nonce"])
    assert httpx.post(query_url, json=body, headers=headers).status_code == 200


def test_sdk_retries_once_with_the_hubs_nonce(nonce_world: World) -> None:
    with (
        added_audit_entries(nonce_world.hub, action="token.issue") as tokens,
        added_audit_entries(nonce_world.hub, action="record.query") as queries,
        nonce_world.client() as client,
    ):
        assert client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE).record
        assert client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE).record
    assert [entry["outcome"] for entry in tokens] == ["refused", "ok"]
    assert [entry["outcome"] for entry in queries] == ["ok", "ok"]  # the nonce came along
