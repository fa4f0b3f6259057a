"""A DPoP proof's RSA key has the public exponent 65537 and 2048 to 4096 bits (decision
0009): a larger exponent made each refused proof cost milliseconds, and the token
endpoint checks the proof before the client authenticates. A key outside the rule is
refused on its members, before it is imported or any signature is checked.

Whether a key was imported is counted on joserfc's ``RSAKey.import_key`` (the call goes
through)."""

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jws, jwt
from joserfc.jwk import ECKey, RSAKey

from onceonly.hub.auth.dpop import ProofError, verify_proof
from onceonly.hub.kit import base64url

from tests.hub_testing import DATABASES, RunningHub, audit_entry_for, granted_client_hub

URL = "https://hub.example.gov/oauth/token"
KEY = RSAKey.generate_key(2048)
MODULUS = int.from_bytes(base64url.decode(str(KEY.as_dict(private=False)["n"])), "big")


def uint(value: int) -> str:
    """RFC 7518 §2 Base64urlUInt: the fewest octets."""
    return base64url.encode(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def claims(url: str = URL) -> dict[str, Any]:
    return {"jti": uuid.uuid4().hex, "htm": "POST", "htu": url, "iat": int(time.time())}


def signed(key: RSAKey, url: str = URL) -> str:
    header = {"typ": "dpop+jwt", "alg": "PS256", "jwk": key.as_dict(private=False)}
    return jws.serialize_compact(header, json.dumps(claims(url)).encode(), key, ["PS256"])


def forged(*, n: int, e: int) -> str:
    """A proof with the jwk (n, e) and a signature below n: a check would be a full
    modular exponentiation, as in helper-80's measurement."""
    header = {"typ": "dpop+jwt", "alg": "PS256", "jwk": {"kty": "RSA", "n": uint(n), "e": uint(e)}}
    signature = secrets.randbelow(n).to_bytes((n.bit_length() + 7) // 8, "big")
    parts = (json.dumps(header).encode(), json.dumps(claims()).encode(), signature)
    return ".".join(base64url.encode(part) for part in parts)


def verify(proof: str) -> str:
    return verify_proof(proof, method="POST", url=URL, now=int(time.time()), max_age=60, skew=5).jkt


@pytest.fixture
def imports(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, for the test: the ``e`` of each RSA key joserfc imports."""
    seen: list[str] = []
    original = RSAKey.import_key

    def counted(value: Any, *args: Any, **kwargs: Any) -> RSAKey:
        if isinstance(value, dict):
            seen.append(str(value.get("e")))
        return original(value, *args, **kwargs)

    monkeypatch.setattr(RSAKey, "import_key", staticmethod(counted))
    return seen


@pytest.mark.parametrize("bits", [2048, 3072, 4096])
def test_a_proof_signed_by_a_key_of_2048_to_4096_bits_verifies(bits: int) -> None:
    key = KEY if bits == 2048 else RSAKey.generate_key(bits)
    assert verify(signed(key)) == key.thumbprint()


@pytest.mark.parametrize(
    "e",
    [(MODULUS >> 72) | 1, 3, (1 << 17) + 1],
    ids=["as-long-as-n", "three", "another-odd"],
)
def test_an_exponent_other_than_65537_is_refused_before_the_key_is_imported(
    e: int, imports: list[str]
) -> None:
    with pytest.raises(ProofError, match=r"not a valid public key: .*public exponent 65537"):
        verify(forged(n=MODULUS, e=e))
    assert imports == []


def test_65537_with_a_zero_octet_in_front_is_refused(imports: list[str]) -> None:
    jwk = {**KEY.as_dict(private=False), "e": base64url.encode(b"\x00\x01\x00\x01")}
    header = {"typ": "dpop+jwt", "alg": "PS256", "jwk": jwk}
    proof = jws.serialize_compact(header, json.dumps(claims()).encode(), KEY, ["PS256"])
    with pytest.raises(ProofError, match="public exponent 65537"):
        verify(proof)
    assert imports == []


def exponent_3_key() -> RSAKey:
    return RSAKey.import_key(rsa.generate_private_key(public_exponent=3, key_size=2048))


def test_a_proof_correctly_signed_by_a_key_with_the_exponent_3_is_refused() -> None:
    with pytest.raises(ProofError, match="public exponent 65537"):
        verify(signed(exponent_3_key()))


def test_a_modulus_above_4096_bits_is_refused_before_the_key_is_imported(
    imports: list[str],
) -> None:
    n = (1 << 6143) | secrets.randbits(6143) | 1  # 6144 bits: its proof fits the header
    with pytest.raises(ProofError, match="not a valid public key: RSA keys must have at most 4096"):
        verify(forged(n=n, e=65537))
    assert imports == []


# --- on the wire: the token endpoint -------------------------------------------------

CLIENT, DEPARTMENT = "social-welfare-adapter", "social-welfare"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module", params=DATABASES)
def hub_and_key(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningHub, ECKey]]:
    with granted_client_hub(
        request,
        tmp_path_factory,
        client_id=CLIENT,
        department=DEPARTMENT,
        items=("person.identity",),
    ) as world:
        yield world


def ask_token(hub: RunningHub, client_key: ECKey, proof: str) -> httpx.Response:
    now = int(time.time())
    assertion = jwt.encode(
        {"alg": "ES256", "kid": client_key.kid},
        {
            "iss": CLIENT,
            "sub": CLIENT,
            "aud": hub.settings.issuer,
            "exp": now + 60,
            "jti": uuid.uuid4().hex,
        },
        client_key,
    )
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    return httpx.post(f"{hub.url}/oauth/token", data=form, headers={"DPoP": proof})


def test_the_token_endpoint_refuses_a_proof_key_with_the_exponent_3(
    hub_and_key: tuple[RunningHub, ECKey],
) -> None:
    hub, client_key = hub_and_key
    token_url = f"{hub.url}/oauth/token"
    assert ask_token(hub, client_key, signed(KEY, token_url)).status_code == 200
    response = ask_token(hub, client_key, signed(exponent_3_key(), token_url))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_dpop_proof"
    assert "public exponent 65537" in response.json()["error_description"]
    entry = audit_entry_for(hub, response, action="token.issue")
    assert (entry["outcome"], entry["reason"]) == ("refused", "oauth-invalid-dpop-proof")
