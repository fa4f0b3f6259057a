"""A refusal says why: a DPoP proof the hub will not verify says which header member or
key member forbids it, not that its signature failed; an access token whose signature
fails says so in words, not in a library's code; a client assertion's ``exp`` that is
not whole seconds says what it must be; and every DPoP challenge, ``insufficient_scope``
too, names the algorithms the hub takes (RFC 9449 §7.1)."""

import time
from typing import Any

import httpx
import pytest
from joserfc import jwt

from onceonly.hub.auth.dpop import ProofError

from tests.hub.auth.test_auth_dpop import (
    BODY,
    World,
    ask,
    ask_token,
    assertion,
    bound_token,
    world,
)
from tests.hub.auth.test_dpop import _public_jwk, _raw_signed, claims, verify
from tests.hub_testing import problem_type

__all__ = ["world"]  # the fixture, for pytest

REFUSED_PROOFS = {
    "an-unknown-critical-header-member": (
        {"crit": ["x-policy"], "x-policy": 1},
        "whose crit names an extension it does not understand (RFC 7515 §4.1.11)",
    ),
    "a-critical-member-not-in-the-header": (
        {"crit": ["x-policy"]},
        "whose crit names a parameter its header lacks (RFC 7515 §4.1.11)",
    ),
    "a-jwk-whose-key-ops-exclude-verify": (
        {"jwk": _public_jwk(key_ops=["sign"])},
        "with a jwk whose key_ops do not include verify (RFC 7517 §4.3)",
    ),
    "a-jwk-for-encryption": (
        {"jwk": _public_jwk(use="enc")},
        'with a jwk whose use is not "sig" (RFC 7517 §4.2)',
    ),
    "a-jwk-for-another-algorithm": (
        {"jwk": _public_jwk(alg="ES384")},
        "with a jwk whose alg is not the proof's alg (RFC 7517 §4.4)",
    ),
}


@pytest.mark.parametrize(("header", "says"), REFUSED_PROOFS.values(), ids=REFUSED_PROOFS.keys())
def test_a_proof_the_hub_will_not_verify_says_why(header: dict[str, Any], says: str) -> None:
    with pytest.raises(ProofError) as refused:
        verify(_raw_signed(header, claims()))
    assert str(refused.value) == f"the hub does not verify a DPoP proof {says}"


def test_a_tampered_access_token_is_refused_as_its_signature_not_verifying(world: World) -> None:
    token = bound_token(world)
    head, body, signature = token.split(".")
    tampered = f"{head}.{body}.{signature[:-8]}AAAAAAAA"
    proof = world.dpop.proof("POST", world.query_url(), access_token=tampered)
    response = ask(world, {"Authorization": f"DPoP {tampered}", "DPoP": proof})
    assert response.status_code == 401, response.text
    assert (
        response.json()["detail"] == "the access token is not valid: its signature does not verify"
    )


def test_a_client_assertion_with_a_fractional_exp_says_it_must_be_whole_seconds(
    world: World,
) -> None:
    claims = jwt.decode(assertion(world), world.client_key).claims
    fractional = jwt.encode(
        {"alg": "ES256", "kid": world.client_key.kid},
        {**claims, "exp": time.time() + 60.5},
        world.client_key,
    )
    proof = world.dpop.proof("POST", world.token_url)
    response = ask_token(world, {"DPoP": proof}, client_assertion=fractional)
    assert response.status_code == 401, response.text
    assert response.json()["error_description"] == (
        "the client assertion is not valid: claim exp is missing or not an integer number"
        " of seconds"
    )


def test_the_insufficient_scope_challenge_names_the_dpop_algorithms(world: World) -> None:
    token = bound_token(world)  # for the identity only: the address query lacks its scope
    proof = world.dpop.proof("POST", world.query_url(), access_token=token)
    response = httpx.post(
        world.query_url(), json=BODY, headers={"Authorization": f"DPoP {token}", "DPoP": proof}
    )
    assert (response.status_code, problem_type(response)) == (403, "insufficient-scope")
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('DPoP realm="onceonly", algs="ES256 Ed25519 EdDSA PS256"')
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="read:person.residential-address"' in challenge
