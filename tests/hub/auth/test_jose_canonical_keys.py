"""One key, one spelling, one thumbprint (RFC 7518 §6.2.1.2, §6.3.1.1; RFC 8037 §2):
an EC coordinate or an Ed25519 ``x`` of other than 32 octets, and an RSA ``n`` with a
leading zero octet, are refused in a DPoP proof's ``jwk`` as in a registered key.

A proof whose ``x`` carried a leading 0x00 verified, and its token was bound to the
thumbprint of that spelling: the same key's canonical proofs were then refused, and
each spelling could take an entry of the kept keys (decision 0050).
"""

import json
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import OKPKey, RSAKey

from onceonly.hub.auth.dpop import ProofError
from onceonly.hub.kit import base64url
from onceonly.hub.registry.exceptions import InvalidJwks
from onceonly.hub.registry.jwks import normalize_jwks

from tests.hub.auth.test_auth_dpop import (
    World,
    ask_token,
    assert_token_refused,
    dpop_private,
    proof_claims,
    signed_proof,
    world,
)
from tests.hub.auth.test_dpop import KEY, _raw_signed, claims, verify
from tests.hub.auth.test_dpop_jwk_encoding import KEY as RSA_KEY
from tests.hub.auth.test_dpop_jwk_encoding import proof as rsa_proof

__all__ = ["dpop_private", "world"]  # the fixtures, for pytest

ED25519 = OKPKey.generate_key("Ed25519")


def padded(value: object) -> str:
    """``value`` (base64url) one octet longer: a 0x00 in front, the same number."""
    return base64url.encode(b"\x00" + base64url.decode(str(value)))


def _ed25519_proof(x: str) -> str:
    header = {"typ": "dpop+jwt", "alg": "Ed25519", "jwk": {**ED25519.as_dict(private=False)}}
    header["jwk"]["x"] = x
    payload = json.dumps(claims()).encode()
    return jws.serialize_compact(header, payload, ED25519, algorithms=["Ed25519"])


def _ec_jwk(**members: str) -> dict[str, Any]:
    return {**KEY.as_dict(private=False), **members}


NON_CANONICAL_PROOFS = {
    "ec-x-with-a-leading-zero": (
        lambda: _raw_signed({"jwk": _ec_jwk(x=padded(KEY.as_dict()["x"]))}, claims()),
        "x must be 32 octets",
    ),
    "ec-y-with-a-leading-zero": (
        lambda: _raw_signed({"jwk": _ec_jwk(y=padded(KEY.as_dict()["y"]))}, claims()),
        "y must be 32 octets",
    ),
    "ed25519-x-of-33-octets": (
        lambda: _ed25519_proof(base64url.encode(base64url.decode(ED25519.as_dict()["x"]) + b"\0")),
        "x must be 32 octets",
    ),
    "rsa-n-with-a-leading-zero": (
        lambda: rsa_proof(padded(RSA_KEY.as_dict(private=False)["n"])),
        "n must be written without a leading zero octet",
    ),
}


@pytest.mark.parametrize(
    ("make", "says"), NON_CANONICAL_PROOFS.values(), ids=NON_CANONICAL_PROOFS.keys()
)
def test_a_proof_key_in_a_non_canonical_spelling_is_refused(make: Any, says: str) -> None:
    with pytest.raises(ProofError, match=f"jwk is not a valid public key: {says}"):
        verify(make())


def test_the_canonical_spellings_verify() -> None:
    assert verify(_raw_signed({}, claims())).jkt == KEY.thumbprint()
    assert verify(_ed25519_proof(str(ED25519.as_dict()["x"])), token=None).jkt == (
        ED25519.thumbprint()
    )


def test_the_token_endpoint_binds_no_token_to_a_padded_spelling_of_a_key(
    world: World, dpop_private: Any
) -> None:
    public = dpop_private.as_dict(private=False)
    jwk = {**public, "x": padded(public["x"])}
    proof = signed_proof(
        dpop_private, proof_claims(world, None, htu=world.token_url), header={"jwk": jwk}
    )
    response = ask_token(world, {"DPoP": proof})
    assert_token_refused(world, response, error="invalid_dpop_proof")
    assert "x must be 32 octets" in response.json()["error_description"]
    bound = ask_token(world, {"DPoP": world.dpop.proof("POST", world.token_url)})
    assert bound.status_code == 200, bound.text


def test_a_client_cannot_register_an_rsa_modulus_with_a_leading_zero() -> None:
    jwk = RSAKey.generate_key(2048).as_dict(private=False)
    assert normalize_jwks({"keys": [jwk]})["keys"][0]["n"] == jwk["n"]
    with pytest.raises(InvalidJwks, match="n must be written without a leading zero octet"):
        normalize_jwks({"keys": [{**jwk, "n": padded(jwk["n"])}]})
