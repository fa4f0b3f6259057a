"""One record exchange end to end, and every refusal, on SQLite and PostgreSQL.

The hub and the owner's adapter run as real servers on loopback; the consumer is
the adapters SDK or raw HTTP, as a department written in another language would be.
"""

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc import jwt

from onceonly.adapters import (
    AccessDenied,
    AuthenticationFailed,
    DPoPKey,
    HubClient,
    NotFound,
    OnceonlyError,
    UpstreamError,
)
from onceonly.hub.audit import leaves
from onceonly.hub.kit import base64url

from tests.hub.exchange_world import (
    ADDRESS,
    ADDRESS_RECORD,
    CONSUMER,
    CONSUMER_CLIENT,
    IDENTITY,
    OWNER,
    PURPOSE,
    SUBJECT,
    World,
    access_token,
    exchange_world,
    module_exchange_world,
)
from tests.hub_testing import CATALOGUE, DATABASES, audit_entry_for, problem_type, serve

# A world per module and database: each test finds its audit entries by request id,
# queries under a grant no other test changes, and puts back the owner's adapter.
FAMILY = "person.family-relations"  # an owner's item granted only for the scope test


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with module_exchange_world(request, tmp_path_factory) as built:
        yield built


@pytest.fixture
def fresh_world(database_url: str, tmp_path: Path) -> Iterator[World]:
    """A world of its own, for a test that changes the item everyone queries."""
    with exchange_world(database_url=database_url, tmp_path=tmp_path) as built:
        yield built


DPOP = DPoPKey.generate()  # the raw-HTTP consumer's proof-of-possession key


def token_for(world: World, scope: str | None = None) -> str:
    """A DPoP-bound access token, requested as docs/protocol.md §2 says."""
    return access_token(world, DPOP, scope=scope)


def query(world: World, item: str, token: str | None, **body: Any) -> httpx.Response:
    url = f"{world.hub.url}/v1/items/{item}/records/query"
    headers = DPOP.headers("POST", url, token) if token else {}
    payload = {"subject": SUBJECT, "purpose": PURPOSE, **body}
    return httpx.post(url, json=payload, headers=headers)


def query_entry(world: World, answer: object) -> dict[str, Any]:
    """The record query's audit entry (``answer``: a response, result or error)."""
    return audit_entry_for(world.hub, answer, action="record.query")


@contextmanager
def owner_served_at(world: World, adapter_url: str) -> Iterator[None]:
    """The owner's adapter registered at ``adapter_url`` for the block, then put back."""
    with world.hub.admin() as admin:
        admin.put_department(OWNER, name="Civil Registry Office", adapter_url=adapter_url)
        try:
            yield
        finally:
            admin.put_department(OWNER, name="Civil Registry Office", adapter_url=world.owner_url)


def test_consumer_receives_record_with_receipt_of_committed_audit_entry(world: World) -> None:
    with world.client() as client:
        result = client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
    assert result.record == ADDRESS_RECORD
    assert result.version == 1
    url = f"{world.hub.url}/v1/audit/entries/{result.receipt.index}"
    public = httpx.get(url).json()
    assert public == {"index": result.receipt.index, "leaf_hash": result.receipt.leaf_hash}
    response = httpx.get(url, headers={"Authorization": f"Bearer {world.hub.keys.admin_token}"})
    entry = response.json()["entry"]
    assert (entry["outcome"], entry["department"], entry["purpose"]) == ("ok", CONSUMER, PURPOSE)
    assert "digest" not in entry
    key = base64url.decode(result.receipt.commitment_key or "")
    assert entry["commitment"] == result.receipt.commitment
    assert entry["commitment"] == leaves.commitment(key, ADDRESS_RECORD)
    assert SUBJECT not in response.text  # only the pseudonym is kept


def test_owner_adapter_keeps_its_own_trail_of_what_it_served(world: World) -> None:
    with world.client() as client:
        result = client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
    served = [s for s in world.owner_store.served_entries() if s.request_id == result.request_id]
    assert [(s.item, s.consumer, s.outcome) for s in served] == [(ADDRESS, CONSUMER, "ok")]


def test_refuses_query_without_token(world: World) -> None:
    response = query(world, ADDRESS, None)
    assert response.status_code == 401
    assert problem_type(response) == "invalid-token"
    assert response.headers["www-authenticate"].startswith("DPoP")
    assert query_entry(world, response)["reason"] == "invalid-token"


def test_refuses_query_with_forged_token(world: World) -> None:
    good = token_for(world)
    header, payload, signature = good.split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"
    response = query(world, ADDRESS, forged)
    assert response.status_code == 401
    assert problem_type(response) == "invalid-token"
    assert query_entry(world, response)["outcome"] == "refused"


def test_refuses_token_signed_by_the_client_instead_of_the_hub(world: World) -> None:
    now = int(time.time())
    claims = {
        "iss": world.hub.settings.issuer,
        "aud": world.hub.settings.issuer,
        "sub": CONSUMER_CLIENT,
        "client_id": CONSUMER_CLIENT,
        "department": CONSUMER,
        "scope": f"read:{ADDRESS}",
        "jti": "x",
        "iat": now,
        "exp": now + 60,
    }
    self_made = jwt.encode(
        {"alg": "ES256", "typ": "at+jwt", "kid": world.hub.keys.kid}, claims, world.consumer_key
    )
    response = query(world, ADDRESS, self_made)
    assert response.status_code == 401


def test_refuses_query_outside_the_tokens_scope(world: World) -> None:
    with world.hub.admin() as admin:
        admin.create_grant(consumer=CONSUMER, item=FAMILY, purpose=PURPOSE, legal_basis="test")
    token = token_for(world, scope=f"read:{FAMILY}")
    response = query(world, ADDRESS, token)
    assert response.status_code == 403
    assert problem_type(response) == "insufficient-scope"
    assert query_entry(world, response)["reason"] == "insufficient-scope"


def test_refuses_item_the_department_holds_no_grant_for(world: World) -> None:
    with world.client() as client, pytest.raises(AccessDenied) as refused:
        client.fetch(IDENTITY, SUBJECT, purpose=PURPOSE)
    assert refused.value.problem_type.endswith("insufficient-scope")
    entry = query_entry(world, refused.value)
    assert (entry["item"], entry["outcome"], entry["department"]) == (IDENTITY, "refused", CONSUMER)


def test_refuses_query_for_another_purpose_than_granted(world: World) -> None:
    with world.client() as client, pytest.raises(AccessDenied) as refused:
        client.fetch(ADDRESS, SUBJECT, purpose="tax-assessment")
    assert refused.value.problem_type.endswith("no-grant")
    assert query_entry(world, refused.value)["purpose"] == "tax-assessment"


def test_revoked_grant_refuses_the_next_query_even_with_a_live_token(world: World) -> None:
    purpose = "housing-benefit"  # a grant of this test's own, so that others keep theirs
    with world.hub.admin() as admin:
        grant = admin.create_grant(
            consumer=CONSUMER, item=ADDRESS, purpose=purpose, legal_basis="test"
        )
    token = token_for(world)
    assert query(world, ADDRESS, token, purpose=purpose).status_code == 200
    with world.hub.admin() as admin:
        admin.revoke_grant(grant["id"])
    response = query(world, ADDRESS, token, purpose=purpose)
    assert response.status_code == 403
    assert problem_type(response) == "no-grant"


def test_refuses_unknown_item(world: World) -> None:
    response = query(world, "person.favourite-colour", token_for(world))
    assert response.status_code == 404
    assert problem_type(response) == "unknown-item"
    assert query_entry(world, response)["reason"] == "unknown-item"


def test_missing_record_is_not_found_only_after_authorization(world: World) -> None:
    with world.client() as client, pytest.raises(NotFound) as missing:
        client.fetch(ADDRESS, "49002124277", purpose=PURPOSE)
    assert query_entry(world, missing.value)["reason"] == "record-not-found"


def test_answers_503_when_the_owner_adapter_is_down(world: World) -> None:
    with (
        owner_served_at(world, "http://127.0.0.1:9"),
        world.client() as client,
        pytest.raises(UpstreamError) as failed,
    ):
        client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
    assert failed.value.status == 503
    entry = query_entry(world, failed.value)
    assert (entry["outcome"], entry["reason"]) == ("failed", "owner-unavailable")


def _lying_owner() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/items/{item}/records/query")
    async def answer(item: str) -> dict[str, Any]:
        return {"item": item, "version": 1, "record": {"street": 42, "city": "Tallinn"}}

    return app


def test_answers_502_when_the_owner_answers_data_outside_the_schema(world: World) -> None:
    with serve(_lying_owner()) as liar, owner_served_at(world, liar):
        with world.client() as client, pytest.raises(UpstreamError) as failed:
            client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
    assert failed.value.status == 502
    assert query_entry(world, failed.value)["reason"] == "owner-invalid-response"


def _slow_owner(released: threading.Event) -> FastAPI:
    """An owner that answers after 3 s, or as soon as the test has seen enough (so that
    its server need not wait out the answer when it stops)."""
    app = FastAPI()

    @app.post("/v1/items/{item}/records/query")
    async def answer(item: str) -> dict[str, Any]:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and not released.is_set():
            await asyncio.sleep(0.01)
        return {"item": item, "version": 1, "record": ADDRESS_RECORD}

    return app


def test_answers_504_when_the_owner_is_too_slow(database_url: str, tmp_path: Path) -> None:
    released = threading.Event()
    with (
        exchange_world(database_url=database_url, tmp_path=tmp_path, owner_timeout=0.3) as world,
        serve(_slow_owner(released)) as slow,
        world.hub.admin() as admin,
    ):
        admin.put_department(OWNER, name="Civil Registry Office", adapter_url=slow)
        started = time.monotonic()
        with world.client() as client, pytest.raises(UpstreamError) as failed:
            client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
        assert time.monotonic() - started < 2.5  # the hub did not wait for the 3 s answer
        assert failed.value.status == 504
        assert query_entry(world, failed.value)["reason"] == "owner-timeout"
        released.set()


def test_grant_with_fields_delivers_only_those_fields(world: World) -> None:
    with world.hub.admin() as admin:
        admin.create_grant(
            consumer=CONSUMER,
            item=ADDRESS,
            purpose="statistics",
            legal_basis="test",
            fields=["city", "country"],
        )
    with world.client() as client:
        result = client.fetch(ADDRESS, SUBJECT, purpose="statistics")
    assert result.record == {"city": "Tallinn", "country": "ND"}
    assert query_entry(world, result)["fields"] == ["city", "country"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"subject": "1", "purpose": "a", "purpose": "b"}', 400),
        (b"[" * 40 + b"]" * 40, 400),
        (b"not json", 400),
        (b'{"subject": "1"}', 400),
        (b'{"subject": "1", "purpose": "benefit-eligibility", "extra": 1}', 400),
        (b'{"subject": "' + b"x" * 70_000 + b'", "purpose": "p"}', 413),
    ],
)
def test_malformed_bodies_get_problem_responses(world: World, body: bytes, status: int) -> None:
    url = f"{world.hub.url}/v1/items/{ADDRESS}/records/query"
    headers = DPOP.headers("POST", url, token_for(world)) | {"Content-Type": "application/json"}
    response = httpx.post(url, content=body, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_body_declared_over_the_limit_is_refused_and_audited(world: World) -> None:
    """A review (helper-172): the record query's 413 is one of its audited refusals, but
    a body declared too large was refused on its head, before the audit scope opened,
    and left no entry. The caller is authenticated first; not a byte of the body is read."""
    limit = world.hub.settings.max_body_bytes
    body = b'{"subject": "' + b"x" * limit + b'", "purpose": "p"}'
    url = f"{world.hub.url}/v1/items/{ADDRESS}/records/query"
    headers = DPOP.headers("POST", url, token_for(world)) | {"Content-Type": "application/json"}
    response = httpx.post(url, content=body, headers=headers)
    assert response.status_code == 413
    assert problem_type(response) == "payload-too-large"
    entry = query_entry(world, response)
    assert (entry["outcome"], entry["reason"]) == ("refused", "payload-too-large")
    assert entry["client"] == CONSUMER_CLIENT


def test_unknown_client_cannot_get_a_token(world: World) -> None:
    stranger = HubClient(world.hub.url, client_id="nobody", key=world.consumer_key, retries=0)
    with stranger, pytest.raises(AuthenticationFailed) as refused:
        stranger.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
    entry = audit_entry_for(world.hub, refused.value, action="token.issue")
    assert (entry["outcome"], entry["reason"]) == ("refused", "client-unknown")


def test_an_item_made_unshareable_refuses_queries_under_earlier_grants(
    fresh_world: World,
) -> None:
    """Sharing class ``none`` means never shared: grants made before do not outlive it."""
    world = fresh_world
    with world.client() as client:
        assert client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE).record
    document = json.loads((CATALOGUE / "items" / f"{ADDRESS}.json").read_text())
    with world.hub.admin() as admin:
        admin.put_item({**document, "sharing_class": "none"})
    with world.client() as client, pytest.raises(OnceonlyError) as refused:
        client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
    assert (refused.value.status, refused.value.problem_type) == (409, "item-not-shared")
    entry = query_entry(world, refused.value)
    assert (entry["outcome"], entry["reason"]) == ("refused", "item-not-shared")
