from __future__ import annotations

import asyncio
import base64
import json
import socket

import pytest
from joserfc.jwk import ECKey

from onceonly.adapters import (
    AccessDenied,
    AsyncHubClient,
    AuthenticationFailed,
    HubClient,
    HubUnavailable,
    NotFound,
    OnceonlyError,
    RecordResult,
    UpstreamError,
)

from tests.adapters.adapter_testing import (
    CLIENT_ID,
    ITEM,
    PURPOSE,
    RECORD,
    SUBJECT,
    HubDouble,
    sha256_b64url,
)


def client(hub: HubDouble, key: ECKey, **options: int) -> HubClient:
    return HubClient(hub.url, client_id=CLIENT_ID, key=key, timeout=5.0, **options)


def test_fetches_a_record_with_its_audit_receipt(hub: HubDouble, client_key: ECKey) -> None:
    with client(hub, client_key) as hub_client:
        result = hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    assert isinstance(result, RecordResult)
    assert (result.item, result.version, result.record) == (ITEM, 1, RECORD)
    assert result.receipt.index == 1
    assert result.receipt.leaf_hash
    assert result.receipt.commitment
    assert result.receipt.commitment_key
    assert result.request_id is not None
    assert result.request_id.startswith("hub-")
    assert hub.queries == ["Bearer"]


def test_refuses_a_receipt_whose_commitment_is_not_to_the_record(
    hub: HubDouble, client_key: ECKey
) -> None:
    """The hub's log must commit to what it delivered: the SDK checks it on every fetch."""
    hub.commit_to_other = True
    with client(hub, client_key) as hub_client, pytest.raises(OnceonlyError, match="commitment"):
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)


def test_reuses_the_access_token_until_it_nears_expiry(hub: HubDouble, client_key: ECKey) -> None:
    with client(hub, client_key) as hub_client:
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    assert hub.token_requests == 1


def test_gets_a_new_token_each_time_when_tokens_live_30_seconds_or_less(
    hub: HubDouble, client_key: ECKey
) -> None:
    hub.token_lifetime = 30
    with client(hub, client_key) as hub_client:
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    assert hub.token_requests == 2


def test_retries_once_with_a_new_token_after_invalid_token(
    hub: HubDouble, client_key: ECKey
) -> None:
    with client(hub, client_key) as hub_client:
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)
        hub.revoke_tokens()
        result = hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    assert result.record == RECORD
    assert hub.token_requests == 2
    assert len(hub.queries) == 3


def test_gives_up_after_a_second_invalid_token(hub: HubDouble, client_key: ECKey) -> None:
    hub.scripted = [(401, "invalid-token"), (401, "invalid-token")]

    with client(hub, client_key) as hub_client, pytest.raises(AuthenticationFailed) as caught:
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    assert caught.value.problem_type == "invalid-token"
    assert len(hub.queries) == 2


def test_an_unregistered_client_is_refused_a_token(hub: HubDouble) -> None:
    stranger = ECKey.generate_key("P-256", auto_kid=True)

    with client(hub, stranger) as hub_client, pytest.raises(AuthenticationFailed) as caught:
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    assert (caught.value.status, caught.value.problem_type) == (401, "invalid-client")
    assert hub.queries == []


def test_maps_no_grant_to_access_denied(hub: HubDouble, client_key: ECKey) -> None:
    hub.scripted = [(403, "no-grant")]

    with client(hub, client_key) as hub_client, pytest.raises(AccessDenied) as caught:
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    assert (caught.value.status, caught.value.problem_type) == (403, "no-grant")
    assert caught.value.detail == "refused"


def test_maps_a_missing_record_to_not_found(hub: HubDouble, client_key: ECKey) -> None:
    with client(hub, client_key) as hub_client, pytest.raises(NotFound) as caught:
        hub_client.fetch(ITEM, "nobody", purpose=PURPOSE)

    assert caught.value.problem_type == "record-not-found"


def test_retries_a_503_and_then_succeeds(hub: HubDouble, client_key: ECKey) -> None:
    hub.scripted = [(503, "owner-unavailable")]

    with client(hub, client_key) as hub_client:
        result = hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    assert result.record == RECORD
    assert len(hub.queries) == 2


def test_raises_upstream_error_when_503_persists(hub: HubDouble, client_key: ECKey) -> None:
    hub.scripted = [(503, "owner-unavailable")] * 3

    with client(hub, client_key, retries=2) as hub_client, pytest.raises(UpstreamError) as caught:
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    assert (caught.value.status, caught.value.problem_type) == (503, "owner-unavailable")
    assert len(hub.queries) == 3


def test_does_not_retry_a_504(hub: HubDouble, client_key: ECKey) -> None:
    hub.scripted = [(504, "owner-timeout")]

    with client(hub, client_key) as hub_client, pytest.raises(UpstreamError):
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    assert len(hub.queries) == 1


def test_raises_hub_unavailable_when_nothing_listens(client_key: ECKey) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hub_client = HubClient(f"http://127.0.0.1:{port}", client_id=CLIENT_ID, key=client_key)

    with hub_client, pytest.raises(HubUnavailable):
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)


def test_async_client_fetches_and_maps_errors_like_the_sync_one(
    hub: HubDouble, client_key: ECKey
) -> None:
    async def scenario() -> RecordResult:
        async with AsyncHubClient(hub.url, client_id=CLIENT_ID, key=client_key) as hub_client:
            result = await hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)
            hub.revoke_tokens()
            hub.scripted = [(503, "owner-unavailable")]
            await hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)
            with pytest.raises(NotFound):
                await hub_client.fetch(ITEM, "nobody", purpose=PURPOSE)
            return result

    result = asyncio.run(scenario())

    assert result.record == RECORD
    assert hub.token_requests == 2


def _claims(proof: str | None) -> dict[str, object]:
    assert proof is not None
    header, payload, _ = proof.split(".")
    assert json.loads(base64.urlsafe_b64decode(header + "=="))["typ"] == "dpop+jwt"
    return dict(json.loads(base64.urlsafe_b64decode(payload + "==")))


def test_sends_a_dpop_proof_with_the_token_request_and_each_query(
    hub: HubDouble, client_key: ECKey
) -> None:
    hub.token_type = "DPoP"
    with client(hub, client_key) as hub_client:
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    token_proof, query_proof = (_claims(proof) for proof in hub.proofs)
    assert (token_proof["htm"], token_proof["htu"]) == ("POST", f"{hub.url}/oauth/token")
    assert "ath" not in token_proof
    assert query_proof["htu"] == f"{hub.url}/v1/items/{ITEM}/records/query"
    (token,) = hub.issued
    assert query_proof["ath"] == sha256_b64url(token)
    assert hub.queries == ["DPoP"]


def test_a_retried_request_carries_a_fresh_proof(hub: HubDouble, client_key: ECKey) -> None:
    hub.token_type = "DPoP"
    hub.scripted = [(503, "owner-unavailable")]
    with client(hub, client_key) as hub_client:
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    first, retried = (_claims(proof)["jti"] for proof in hub.proofs[1:])
    assert first != retried
