"""RFC 9449 §4.3: the DPoP attack table against ``dpop.verify_proof`` itself, no server.

Each row is one way to forge, replay elsewhere or mangle a proof, and the check that
must refuse it; the wire-level tests (test_auth_dpop.py) show what a client sees.
"""

import base64
import hashlib
import hmac
import json
import math
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey, RSAKey

from onceonly.hub.auth.dpop import PresentedToken, ProofError, b64url_sha256, verify_proof
from onceonly.hub.kit import base64url, es256

NOW, MAX_AGE, SKEW = 1_800_000_000, 60, 5
URL = "https://hub.example.gov/v1/items/person.identity/records/query"
TOKEN = "an-access-token"
KEY = ECKey.generate_key("P-256")
OTHER = ECKey.generate_key("P-256")


def claims(**changes: Any) -> dict[str, Any]:
    base = {"jti": "j-1", "htm": "POST", "htu": URL, "iat": NOW, "ath": b64url_sha256(TOKEN)}
    return {name: value for name, value in {**base, **changes}.items() if value is not None}


def signed(
    payload: dict[str, Any],
    *,
    key: Any = KEY,
    alg: str = "ES256",
    jwk: Any = None,
    **header: Any,
) -> str:
    public = (jwk or key).as_dict(private=False)
    protected = {"typ": "dpop+jwt", "alg": alg, "jwk": public, **header}
    protected = {name: value for name, value in protected.items() if value is not None}
    return jws.serialize_compact(protected, json.dumps(payload).encode(), key, algorithms=[alg])


def forged(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    head = base64url.encode(json.dumps(header).encode())
    body = base64url.encode(json.dumps(payload).encode())
    return f"{head}.{body}.{base64url.encode(signature)}"


def verify(proof: str, *, method: str = "POST", url: str = URL, token: str | None = TOKEN) -> Any:
    # the token as a caller verified it: bound to the proofs' key, so as it would be kept
    presented = None if token is None else PresentedToken(token, "a-client", KEY.thumbprint())
    return verify_proof(
        proof, method=method, url=url, now=NOW, max_age=MAX_AGE, skew=SKEW, access_token=presented
    )


def test_a_valid_proof_names_its_keys_thumbprint_jti_and_nonce() -> None:
    proof = verify(signed(claims(nonce="n-1")))
    assert (proof.jkt, proof.jti, proof.iat, proof.nonce) == (KEY.thumbprint(), "j-1", NOW, "n-1")


@pytest.mark.parametrize(
    ("key", "alg"),
    [
        (OKPKey.generate_key("Ed25519"), "Ed25519"),
        (RSAKey.generate_key(2048), "PS256"),
    ],
    ids=["Ed25519", "PS256"],
)
def test_every_supported_algorithm_verifies(key: Any, alg: str) -> None:
    assert verify(signed(claims(), key=key, alg=alg)).jkt == key.thumbprint()


@pytest.mark.parametrize(
    ("url", "htu"),
    [
        (URL + "?page=2#top", URL),  # query and fragment are not compared (step 9)
        (URL, URL.replace("https://hub.example.gov", "HTTPS://Hub.Example.GOV:443")),
        (URL, URL.replace("/records/", "/rec%6Frds/")),  # an unreserved one, encoded
        (URL, URL.replace("/v1/", "/v1/x/../")),
        (URL, URL.replace("/v1/", "/./v1/./")),
        (URL.replace("query", "qu%2fery"), URL.replace("query", "qu%2Fery")),  # hex case
    ],
    ids=["query-and-fragment", "case-and-default-port", "percent", "dot-dot", "dot", "hex-case"],
)
def test_htu_is_compared_after_normalization(url: str, htu: str) -> None:
    assert verify(signed(claims(htu=htu)), url=url).jti == "j-1"


def test_without_an_access_token_ath_is_not_required() -> None:
    assert verify(signed(claims(ath=None)), token=None).jti == "j-1"


@pytest.mark.parametrize("iat", [NOW + SKEW, NOW - MAX_AGE - SKEW], ids=["skew", "max-age"])
def test_iat_at_the_edges_of_the_window_is_accepted(iat: int) -> None:
    assert verify(signed(claims(iat=iat))).iat == iat


@pytest.mark.parametrize("iat", [NOW + 0.25, NOW - 0.75, float(NOW)], ids=str)
def test_a_fractional_iat_is_a_numeric_date(iat: float) -> None:
    """RFC 7519 §2: a NumericDate may have a fraction (a client that writes time.time());
    the jti is remembered up to the next whole second after it."""
    assert verify(signed(claims(iat=iat))).iat == math.ceil(iat)


def _hs256(payload: dict[str, Any]) -> str:
    header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "c2VjcmV0"}}
    text = forged(header, payload).rsplit(".", 1)[0]
    return f"{text}.{base64url.encode(hmac.new(b'secret', text.encode(), hashlib.sha256).digest())}"


def _rsa_1024() -> dict[str, str]:
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    n = numbers.public_numbers().n.to_bytes(128, "big")
    return {"kty": "RSA", "n": base64url.encode(n), "e": "AQAB"}


ATTACKS: list[tuple[str, Any, dict[str, Any], str]] = [
    ("not a JWS", lambda: "not.a-proof", {}, "not a compact JWS"),
    ("oversized", lambda: "a" * 9000, {}, "longer than"),
    ("typ jwt", lambda: signed(claims(), typ="JWT"), {}, "typ must be dpop"),
    ("typ missing", lambda: signed(claims(), typ=None), {}, "typ must be dpop"),
    ("alg none", lambda: forged({"typ": "dpop+jwt", "alg": "none"}, claims()), {}, "alg must"),
    ("alg HS256", lambda: _hs256(claims()), {}, "alg must"),
    ("no jwk", lambda: forged({"typ": "dpop+jwt", "alg": "ES256"}, claims()), {}, "no jwk"),
    (
        "private jwk",
        lambda: forged(
            {"typ": "dpop+jwt", "alg": "ES256", "jwk": KEY.as_dict(private=True)}, claims()
        ),
        {},
        "must be a public key",
    ),
    (
        "EC key for EdDSA",
        lambda: forged(
            {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": KEY.as_dict(private=False)}, claims()
        ),
        {},
        "needs a OKP",
    ),
    ("signed by another key", lambda: signed(claims(), key=OTHER, jwk=KEY), {}, "does not verify"),
    (
        "RSA below 2048 bits",
        lambda: forged({"typ": "dpop+jwt", "alg": "PS256", "jwk": _rsa_1024()}, claims()),
        {},
        "not a valid public key",
    ),
    ("no jti", lambda: signed(claims(jti=None)), {}, "needs a jti"),
    ("jti too long", lambda: signed(claims(jti="j" * 257)), {}, "needs a jti"),
    ("iat missing", lambda: signed(claims(iat=None)), {}, "numeric iat"),
    ("iat a string", lambda: signed(claims(iat=str(NOW))), {}, "numeric iat"),
    ("iat a boolean", lambda: signed(claims(iat=True)), {}, "numeric iat"),
    ("other method", lambda: signed(claims(htm="GET")), {}, "another method"),
    ("other URL", lambda: signed(claims(htu=URL + "/x")), {}, "another URL"),
    ("other host", lambda: signed(claims(htu=URL.replace("hub.", "evil."))), {}, "another URL"),
    (
        "other port",
        lambda: signed(claims(htu=URL.replace(".gov/", ".gov:8443/"))),
        {},
        "another URL",
    ),
    ("htu relative", lambda: signed(claims(htu="/v1/items")), {}, "absolute URL"),
    (
        "htu with user information",
        lambda: signed(claims(htu=URL.replace("https://", "https://a:b@"))),
        {},
        "user information",
    ),
    (  # a reserved character encoded is another path (RFC 3986 §6.2.2.2)
        "htu with a slash encoded",
        lambda: signed(claims(htu=URL.replace("/records/", "/records%2F"))),
        {},
        "another URL",
    ),
    ("htu above the root", lambda: signed(claims(htu=URL + "/..")), {}, "another URL"),
    ("from the future", lambda: signed(claims(iat=NOW + SKEW + 1)), {}, "in the future"),
    ("a fraction in the future", lambda: signed(claims(iat=NOW + SKEW + 0.5)), {}, "future"),
    ("too old", lambda: signed(claims(iat=NOW - MAX_AGE - SKEW - 1)), {}, "too old"),
    ("ath missing", lambda: signed(claims(ath=None)), {}, "ath does not match"),
    ("ath of another token", lambda: signed(claims(ath=b64url_sha256("other"))), {}, "ath"),
    ("proof for a GET used on POST", lambda: signed(claims()), {"method": "GET"}, "another method"),
    # ES256 is checked straight through cryptography (onceonly.hub.kit.es256): these
    # hold it to what joserfc refused
    ("ES256 signature in DER, not R||S", lambda: _der_signed(claims()), {}, "does not verify"),
    (
        "an unknown critical header member",
        lambda: _raw_signed({"crit": ["x-policy"], "x-policy": 1}, claims()),
        {},
        "does not verify",
    ),
    (
        "a jwk whose key_ops exclude verify",
        lambda: _raw_signed({"jwk": _public_jwk(key_ops=["sign"])}, claims()),
        {},
        "does not verify",
    ),
    (
        "a jwk for encryption",
        lambda: _raw_signed({"jwk": _public_jwk(use="enc")}, claims()),
        {},
        "does not verify",
    ),
    (
        "a jwk for another algorithm",
        lambda: _raw_signed({"jwk": _public_jwk(alg="ES384")}, claims()),
        {},
        "does not verify",
    ),
    (
        "a signature spelt with other unused low bits",
        lambda: _respelt(signed(claims())),
        {},
        "does not verify",
    ),
    (
        "a critical member that is not in the header",
        lambda: _raw_signed({"crit": ["x-policy"]}, claims()),
        {},
        "does not verify",
    ),
]


def _raw_signed(extra_header: dict[str, Any], payload: dict[str, Any]) -> str:
    """Signed over exactly these members, as no JOSE library would let a client sign."""
    private = KEY.get_op_key("sign")
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": KEY.as_dict(private=False)}
    return es256.sign(private, {**header, **extra_header}, payload)


def _public_jwk(**members: Any) -> dict[str, Any]:
    return {**KEY.as_dict(private=False), **members}


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _respelt(proof: str) -> str:
    """The same signature bytes, its last character's unused low bit flipped (R||S is
    64 bytes: 86 characters carry 516 bits, the last 4 unused)."""
    last = _ALPHABET.index(proof[-1])
    respelt = proof[:-1] + _ALPHABET[last ^ 1]
    lenient = base64.urlsafe_b64decode(respelt.rsplit(".", 1)[1] + "==")  # as Python reads it
    assert lenient == base64url.decode(proof.rsplit(".", 1)[1])
    return respelt


def _der_signed(payload: dict[str, Any]) -> str:
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": KEY.as_dict(private=False)}
    parts = (base64url.encode(json.dumps(part).encode()) for part in (header, payload))
    text = ".".join(parts)
    der = KEY.get_op_key("sign").sign(text.encode(), ec.ECDSA(hashes.SHA256()))
    return f"{text}.{base64url.encode(der)}"


@pytest.mark.parametrize(
    ("make", "request_changes", "refusal"),
    [attack[1:] for attack in ATTACKS],
    ids=[attack[0] for attack in ATTACKS],
)
def test_a_forged_or_misused_proof_is_refused(
    make: Any, request_changes: dict[str, Any], refusal: str
) -> None:
    with pytest.raises(ProofError, match=refusal):
        verify(make(), **request_changes)


# The 8 points of Ed25519 whose order divides the cofactor, as RFC 8032 encodes them.
_SMALL_ORDER = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
]


@pytest.mark.parametrize("point", _SMALL_ORDER)
def test_a_small_order_ed25519_key_is_refused_before_any_signature_is_checked(
    point: str,
) -> None:
    """With a public key of small order, a signature (R, 0) with R of small order verifies
    for about one message in eight, without any private key: a proof anyone could make
    for a token bound to such a key. Every R is tried; none may pass."""
    x = base64url.encode(bytes.fromhex(point))
    header = {"typ": "dpop+jwt", "alg": "Ed25519", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": x}}
    refusals = set()
    for r in _SMALL_ORDER:
        for attempt in range(8):  # a new jti, a new message
            proof = forged(header, claims(jti=f"j-{attempt}"), bytes.fromhex(r) + bytes(32))
            with pytest.raises(ProofError) as refused:
                verify(proof)
            refusals.add(str(refused.value))
    assert refusals == {
        "the DPoP proof's jwk is not a valid public key: x is a point of small order,"
        " which no signature should verify with"
    }
