"""A client's RSA key registered before decision 0009's Later rule (exponent 65537, 2048
to 4096 bits) is not verified with: its assertions are checked with the decoy, and
refused like any assertion that does not verify (registration refuses such keys now,
but a database may hold one from before)."""

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from onceonly.hub.auth.exceptions import ClientSignatureInvalid
from onceonly.hub.auth.tokens import assertion_keys, verify_client_assertion

NOW, ISSUER, CLIENT = 1_800_000_000, "https://hub.example.gov", "old-client"


def _rsa(exponent: int, bits: int = 2048) -> RSAKey:
    key = RSAKey.import_key(rsa.generate_private_key(public_exponent=exponent, key_size=bits))
    key.ensure_kid()
    return key


def _assertion(key: RSAKey) -> str:
    claims: dict[str, Any] = {
        "iss": CLIENT,
        "sub": CLIENT,
        "aud": ISSUER,
        "exp": NOW + 60,
        "jti": "j-1",
    }
    return jwt.encode({"alg": "PS256", "kid": key.kid}, claims, key, algorithms=["PS256"])


def _stored(key: RSAKey) -> KeySet:
    """The key as the registry holds it: its public half."""
    return KeySet.import_key_set({"keys": [key.as_dict(private=False)]})


def test_an_rsa_key_with_the_exponent_65537_is_used() -> None:
    key = _rsa(65537)
    keys = _stored(key)
    assert assertion_keys(keys, {"alg": "PS256", "kid": key.kid}) is keys
    claims = verify_client_assertion(
        _assertion(key), client_id=CLIENT, client_keys=keys, issuer=ISSUER, now=NOW, skew=5
    )
    assert claims.jti == "j-1"


def test_an_rsa_key_stored_with_another_exponent_is_not_used() -> None:
    key = _rsa(3)  # the one other exponent cryptography makes; a larger one costs more
    keys = _stored(key)
    chosen = assertion_keys(keys, {"alg": "PS256", "kid": key.kid})
    assert chosen is not keys  # the decoy, under the same kid
    with pytest.raises(ClientSignatureInvalid):  # before: it verified, and a token followed
        verify_client_assertion(
            _assertion(key), client_id=CLIENT, client_keys=chosen, issuer=ISSUER, now=NOW, skew=5
        )
