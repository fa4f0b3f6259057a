"""A DPoP proof's RSA key is measured on its modulus ``n``, which must be unpadded
base64url (RFC 7518 §6.3.1.1, RFC 7515 §2): any other spelling of a good key is refused
as not a valid public key, like a key below 2048 bits."""

import json
import time
import uuid

import pytest
from joserfc import jws
from joserfc.jwk import RSAKey

from onceonly.hub.auth.dpop import ProofError, verify_proof

URL = "https://hub.example.gov/v1/token"
KEY = RSAKey.generate_key(2048)


def proof(n: str) -> str:
    jwk = {**KEY.as_dict(private=False), "n": n}
    header = {"typ": "dpop+jwt", "alg": "PS256", "jwk": jwk}
    payload = {"jti": uuid.uuid4().hex, "htm": "POST", "htu": URL, "iat": int(time.time())}
    return jws.serialize_compact(header, json.dumps(payload).encode(), KEY, algorithms=["PS256"])


def verify(text: str) -> str:
    checked = verify_proof(text, method="POST", url=URL, now=int(time.time()), max_age=60, skew=5)
    return checked.jkt


def test_a_2048_bit_key_as_written_verifies() -> None:
    assert verify(proof(str(KEY.as_dict(private=False)["n"]))) == KEY.thumbprint()


@pytest.mark.parametrize(
    "respell", [lambda n: n + "==", lambda n: n.replace("-", "+").replace("_", "/") + "+"]
)
def test_a_modulus_in_another_spelling_is_refused(respell: object) -> None:
    n = respell(str(KEY.as_dict(private=False)["n"]))  # type: ignore[operator]
    with pytest.raises(ProofError, match="not a valid public key"):
        verify(proof(n))
