"""An administrator disables a client, and enables it again: its access tokens end at
once on every route, it gets no new one (answered as an unknown client would be), and
it comes back only when no token it held can come back with it. On SQLite and
PostgreSQL, against a real hub on loopback.
"""

import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from joserfc import jwt
from joserfc.jwk import ECKey

from onceonly.adapters import DPoPKey, public_jwks
from onceonly.hub.auth.models import ClientDisablement
from onceonly.hub.db import make_sync_engine
from onceonly.hub.kit.clock import utcnow

from tests.hub.exchange_world import ADDRESS, CONSUMER, PURPOSE, SUBJECT, World, exchange_world
from tests.hub_testing import (
    DATABASES,
    audit_entry_for,
    module_database,
    problem_type,
    signed_in,
    steward,
)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    database_url = module_database(request, tmp_path_factory)
    with exchange_world(
        database_url=database_url, tmp_path=tmp_path_factory.mktemp("world")
    ) as built:
        yield built


@pytest.fixture(scope="module")
def administrator(world: World) -> dict[str, str]:
    return signed_in(world.hub, "clients-admin", {"role": "administrator"})


def new_client(world: World) -> tuple[str, ECKey]:
    """A client of the consumer department (which holds a grant for the address)."""
    client_id, key = f"sw-{uuid.uuid4().hex[:8]}", ECKey.generate_key("P-256", auto_kid=True)
    with world.hub.admin() as admin:
        admin.put_client(client_id, department=CONSUMER, jwks=public_jwks(key))
    return client_id, key


def assertion_form(world: World, client_id: str, key: ECKey, **form: str) -> dict[str, str]:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": world.hub.settings.issuer}
    claims |= {"iat": now, "exp": now + 60, "jti": uuid.uuid4().hex}
    signed = jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed, **form}


def ask_token(world: World, client_id: str, key: ECKey, dpop: DPoPKey) -> httpx.Response:
    url = f"{world.hub.url}/oauth/token"
    form = assertion_form(world, client_id, key, grant_type="client_credentials")
    return httpx.post(url, data=form, headers={"DPoP": dpop.proof("POST", url)})


def access_token(world: World, client_id: str, key: ECKey, dpop: DPoPKey) -> str:
    response = ask_token(world, client_id, key, dpop)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def query(world: World, token: str, dpop: DPoPKey) -> httpx.Response:
    url = f"{world.hub.url}/v1/items/{ADDRESS}/records/query"
    body = {"subject": SUBJECT, "purpose": PURPOSE}
    return httpx.post(url, json=body, headers=dpop.headers("POST", url, token))


def own_registration(world: World, token: str, dpop: DPoPKey) -> httpx.Response:
    url = f"{world.hub.url}/v1/clients/self"
    return httpx.get(url, headers=dpop.headers("GET", url, token))


def set_standing(
    world: World, client_id: str, verb: str, headers: dict[str, str]
) -> httpx.Response:
    return httpx.post(f"{world.hub.url}/v1/admin/clients/{client_id}/{verb}", headers=headers)


def forget_the_disabling(world: World, client_id: str) -> None:
    """Move the client's disabling an hour into the past: as if its tokens had expired."""
    engine = make_sync_engine(world.hub.settings.resolved_database_url)
    try:
        with engine.begin() as conn:
            moved = conn.execute(
                sa.update(ClientDisablement)
                .where(ClientDisablement.client_id == client_id)  # type: ignore[arg-type]
                .values(disabled_at=utcnow() - timedelta(hours=1))
            )
            assert moved.rowcount == 1
    finally:
        engine.dispose()


def test_disabling_a_client_ends_its_access_tokens_at_once_on_every_route(
    world: World, administrator: dict[str, str]
) -> None:
    client_id, key = new_client(world)
    sibling_id, sibling_key = new_client(world)  # the same department: may introspect
    dpop = DPoPKey.generate()
    token = access_token(world, client_id, key, dpop)
    assert query(world, token, dpop).status_code == 200
    assert own_registration(world, token, dpop).status_code == 200

    disabled = set_standing(world, client_id, "disable", administrator)
    assert disabled.status_code == 200, disabled.text
    assert disabled.json() == {
        "client_id": client_id,
        "department": CONSUMER,
        "status": "disabled",
        "kids": [key.kid],
    }
    entry = audit_entry_for(world.hub, disabled, action="registry.client.disable")
    assert (entry["outcome"], entry["person"], entry["target"], entry["department"]) == (
        "ok",
        "clients-admin",
        client_id,
        CONSUMER,
    )

    for refused in (query(world, token, dpop), own_registration(world, token, dpop)):
        assert refused.status_code == 401, refused.text
        assert problem_type(refused) == "invalid-token"
        assert "no longer active" in refused.json()["detail"]
    introspected = httpx.post(
        f"{world.hub.url}/oauth/introspect",
        data=assertion_form(world, sibling_id, sibling_key, token=token),
    )
    assert introspected.json() == {"active": False}


def test_a_disabled_client_gets_no_token_and_the_same_answer_as_an_unknown_one(
    world: World, administrator: dict[str, str]
) -> None:
    client_id, key = new_client(world)
    assert set_standing(world, client_id, "disable", administrator).status_code == 200
    dpop = DPoPKey.generate()
    disabled = ask_token(world, client_id, key, dpop)
    unknown = ask_token(world, f"nobody-{uuid.uuid4().hex[:6]}", key, dpop)
    forged = ask_token(world, new_client(world)[0], key, dpop)  # signed by another key
    answers = [disabled, unknown, forged]
    assert {answer.status_code for answer in answers} == {401}
    assert len({json.dumps(answer.json(), sort_keys=True) for answer in answers}) == 1
    assert disabled.json()["error"] == "invalid_client"
    entry = audit_entry_for(world.hub, disabled, action="token.issue")
    assert (entry["outcome"], entry["reason"], entry["client"], entry["department"]) == (
        "refused",
        "client-disabled",
        client_id,
        CONSUMER,
    )


def test_enabling_waits_until_no_token_of_before_can_come_back(
    world: World, administrator: dict[str, str]
) -> None:
    """Tokens are judged by their client's standing now: enabling the client while a
    token it held may live would give that token back."""
    client_id, key = new_client(world)
    assert set_standing(world, client_id, "disable", administrator).status_code == 200
    early = set_standing(world, client_id, "enable", administrator)
    assert early.status_code == 409, early.text
    assert problem_type(early) == "client-tokens-outstanding"
    lifetime = world.hub.settings.access_token_lifetime + world.hub.settings.clock_skew
    assert 0 < int(early.headers["retry-after"]) <= lifetime
    assert ask_token(world, client_id, key, DPoPKey.generate()).status_code == 401

    forget_the_disabling(world, client_id)
    enabled = set_standing(world, client_id, "enable", administrator)
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["status"] == "active"
    entry = audit_entry_for(world.hub, enabled, action="registry.client.enable")
    assert (entry["outcome"], entry["target"]) == ("ok", client_id)
    dpop = DPoPKey.generate()
    assert query(world, access_token(world, client_id, key, dpop), dpop).status_code == 200


def test_disabling_twice_keeps_the_first_disabling_and_enabling_an_active_client_is_a_no_op(
    world: World, administrator: dict[str, str]
) -> None:
    client_id, _ = new_client(world)
    assert set_standing(world, client_id, "enable", administrator).status_code == 200
    assert set_standing(world, client_id, "disable", administrator).status_code == 200
    forget_the_disabling(world, client_id)
    again = set_standing(world, client_id, "disable", administrator)
    assert (again.status_code, again.json()["status"]) == (200, "disabled")
    assert set_standing(world, client_id, "enable", administrator).status_code == 200


def test_only_an_administrator_sets_a_clients_standing_and_only_of_a_client_that_exists(
    world: World, administrator: dict[str, str]
) -> None:
    client_id, key = new_client(world)
    for role in ({"role": "auditor"}, steward(CONSUMER)):
        headers = signed_in(world.hub, f"not-admin-{uuid.uuid4().hex[:6]}", role)
        refused = set_standing(world, client_id, "disable", headers)
        assert (refused.status_code, problem_type(refused)) == (403, "forbidden")
        entry = audit_entry_for(world.hub, refused, action="registry.client.disable")
        assert (entry["outcome"], entry["reason"]) == ("refused", "forbidden")
    dpop = DPoPKey.generate()
    assert query(world, access_token(world, client_id, key, dpop), dpop).status_code == 200
    missing = set_standing(world, "no-such-client", "disable", administrator)
    assert (missing.status_code, problem_type(missing)) == (404, "client-not-found")
    entry = audit_entry_for(world.hub, missing, action="registry.client.disable")
    assert (entry["reason"], entry["target"]) == ("client-not-found", "no-such-client")
