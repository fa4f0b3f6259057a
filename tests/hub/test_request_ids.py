"""The hub's own request ids (onceonly.hub.middleware): random UUIDs, version 4, as hex;
and the caller's own ``X-Request-Id``, which an audit entry keeps only for a client
that has authenticated (decision 0070)."""

import csv
import io
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import ECKey

from onceonly.adapters import AccessDenied, HubClient
from onceonly.hub.auth.dependencies import token_caller
from onceonly.hub.middleware import new_request_id

from tests.hub_testing import (
    DATABASES,
    RunningHub,
    added_audit_entries,
    audit_entry_for,
    granted_client_hub,
    running_hub,
)


def test_a_request_id_is_a_random_uuid4_in_hex() -> None:
    ids = [new_request_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for request_id in ids:
        parsed = uuid.UUID(hex=request_id)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert parsed.hex == request_id  # 32 lower-case hex digits, as uuid4().hex
    # every other bit is random: each of the 122 is seen both set and clear
    fixed = (0xC000 << 48) | (0xF000 << 64)
    ones = [int(request_id, 16) for request_id in ids]
    seen_set = seen_clear = 0
    for value in ones:
        seen_set |= value
        seen_clear |= ~value
    random_bits = ((1 << 128) - 1) & ~fixed
    assert seen_set & random_bits == random_bits
    assert seen_clear & random_bits == random_bits


# --- the caller's own X-Request-Id in the audit log (decision 0070) ---------------------

CLIENT, DEPARTMENT = "social-welfare-adapter", "social-welfare"
OFFERED = "citizen-38001085718-JohnDoe"  # what nobody must be able to write into the log


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningHub, ECKey]]:
    with granted_client_hub(
        request, tmp_path_factory, client_id=CLIENT, department=DEPARTMENT, items=()
    ) as world:
        yield world


def _entry(hub: RunningHub, request_id: str) -> dict[str, Any]:
    """The audit entry of the hub's request ``request_id``, whatever its action."""
    with hub.admin() as admin:
        page = admin.audit_entries(limit=1000)
    (entry,) = [e["entry"] for e in page["entries"] if e["entry"]["request_id"] == request_id]
    return dict(entry)


def _forged_assertion(hub: RunningHub) -> str:
    """A client assertion for the registered client, signed by a key that is not its."""
    now = int(time.time())
    claims = {"iss": CLIENT, "sub": CLIENT, "aud": f"{hub.url}/oauth/token", "iat": now}
    claims |= {"exp": now + 60, "jti": new_request_id()}
    return jwt.encode({"alg": "ES256"}, claims, ECKey.generate_key("P-256"))


def _offering(request_id: str) -> Callable[[httpx.Request], None]:
    """An httpx request hook: every request the SDK sends carries ``request_id``."""

    def offer(request: httpx.Request) -> None:
        request.headers["X-Request-Id"] = request_id

    return offer


def test_an_unauthenticated_request_leaves_no_id_of_its_own_in_the_log(
    world: tuple[RunningHub, ECKey],
) -> None:
    hub, _ = world
    offered = {"X-Request-Id": OFFERED}
    forged = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": _forged_assertion(hub),
    }
    answers = [
        httpx.get(f"{hub.url}/v1/audit/entries", params={"subject": "1"}, headers=offered),
        httpx.post(
            f"{hub.url}/oauth/token", data={**forged, "client_id": "nobody"}, headers=offered
        ),
        httpx.post(f"{hub.url}/oauth/token", data=forged, headers=offered),  # names the client
    ]
    assert [answer.status_code for answer in answers] == [401, 401, 401]
    for answer in answers:
        ours = answer.headers["x-request-id"]
        assert ours != OFFERED  # the answer carries the hub's own id, never the caller's
        entry = _entry(hub, ours)
        assert "client_request_id" not in entry
        assert OFFERED not in json.dumps(entry)
    assert _entry(hub, answers[2].headers["x-request-id"])["client"] == CLIENT


def test_an_authenticated_clients_id_is_kept_beside_the_hubs(
    world: tuple[RunningHub, ECKey],
) -> None:
    hub, key = world
    with HubClient(hub.url, client_id=CLIENT, key=key, retries=0) as client:
        client._http.event_hooks["request"].append(_offering("batch-7.retry_1"))
        with added_audit_entries(hub, action="token.issue") as issued:
            client.audit_entry(0)  # a department's read of the log: audited
        with pytest.raises(AccessDenied) as refused:  # no grant: refused, yet authenticated
            client.fetch("person.residential-address", "38001085718", purpose="x-purpose")
    (token,) = issued
    query = _entry(hub, str(refused.value.request_id))
    assert (query["action"], query["client_request_id"]) == ("record.query", "batch-7.retry_1")
    assert query["item"] == "person.residential-address"  # the path's item: it authenticated
    assert (token["client"], token["client_request_id"]) == (CLIENT, "batch-7.retry_1")
    with hub.admin() as admin:
        page = admin.audit_entries(action="audit.read", limit=1000)
    (read,) = [e["entry"] for e in page["entries"] if e["entry"].get("client") == CLIENT]
    assert read["client_request_id"] == "batch-7.retry_1"
    assert read["request_id"] != token["request_id"]

    export = httpx.get(
        f"{hub.url}/v1/audit/export",
        params={"format": "csv"},
        headers={"Authorization": f"Bearer {hub.keys.admin_token}"},
    )
    rows = list(csv.DictReader(io.StringIO(export.text)))
    kept = {row["request_id"] for row in rows if row["client_request_id"] == "batch-7.retry_1"}
    assert kept == {token["request_id"], read["request_id"], query["request_id"]}


# --- the record query's path item, the caller's text too (0070's follow-up) -------------

PATH_ITEM = "citizen.jaan-tamm.born-a38001085718"  # an item id by its pattern, and personal


def _through_the_declared_route(app: FastAPI) -> None:
    """While the application has dependency overrides, the record query goes past the
    fast path to the declared route (exchange.endpoints.ExchangeFastPath): an override
    that changes nothing sends it there."""
    app.dependency_overrides[token_caller] = token_caller


@pytest.mark.parametrize("past", [False, True], ids=["fast-path", "declared-route"])
def test_an_anonymous_record_query_leaves_no_item_of_its_own_in_the_log(
    database_url: str, tmp_path: Path, past: bool
) -> None:
    """The path's item is noted once the client has authenticated, as its request id
    is: before, a refusal without credentials (or with a token that does not hold)
    kept whatever text matched the item pattern, up to 128 characters."""
    adjust = _through_the_declared_route if past else None
    with running_hub(database_url=database_url, data_dir=tmp_path, adjust=adjust) as hub:
        longest = "a" * 64 + "." + "b" * 63
        sent = {
            PATH_ITEM: {},
            longest: {},
            f"{PATH_ITEM}-2": {"Authorization": "DPoP not-a-token"},
        }
        for item, credentials in sent.items():
            answer = httpx.post(
                f"{hub.url}/v1/items/{item}/records/query",
                json={},
                headers={"X-Request-Id": OFFERED, **credentials},
            )
            assert answer.status_code == 401, answer.text
            entry = audit_entry_for(hub, answer, action="record.query")
            assert entry["outcome"] == "refused"
            assert "item" not in entry
            assert "client_request_id" not in entry
            assert item not in json.dumps(entry)
