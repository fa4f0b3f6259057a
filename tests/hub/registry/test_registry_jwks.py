"""A client's keys are checked before they are registered (``registry.jwks``): an RSA
modulus is measured as unpadded base64url (RFC 7518 §6.3.1.1), so a padded or
standard-alphabet ``n`` is refused with a detail that says so, and a weak key is
refused before it is loaded. An RSA key has the public exponent 65537 and at most
4096 bits (decision 0009): a larger exponent makes each of its signature checks slow."""

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import ECKey, OKPKey, RSAKey

from onceonly.hub.kit import base64url
from onceonly.hub.registry.exceptions import InvalidJwks
from onceonly.hub.registry.jwks import normalize_jwks

KEY = RSAKey.generate_key(2048).as_dict(private=False)


def with_n(n: str) -> dict[str, Any]:
    return {"keys": [{**KEY, "n": n}]}


def test_a_2048_bit_key_is_registered_with_its_thumbprint_as_kid() -> None:
    [registered] = normalize_jwks(with_n(str(KEY["n"])))["keys"]
    assert registered["n"] == KEY["n"]
    assert registered["kid"] == RSAKey.import_key(KEY).thumbprint()


@pytest.mark.parametrize("n", [str(KEY["n"]) + "==", "+" + str(KEY["n"])[1:], str(KEY["n"]) + "!"])
def test_a_modulus_that_is_not_unpadded_base64url_is_refused(n: str) -> None:
    with pytest.raises(InvalidJwks, match="/keys/0: not unpadded base64url"):
        normalize_jwks(with_n(n))


def test_a_modulus_below_2048_bits_is_refused() -> None:
    small = base64url.encode(((1 << 2046) + 1).to_bytes(256, "big"))  # 2047 bits
    with pytest.raises(InvalidJwks, match="at least 2048 bits"):
        normalize_jwks(with_n(small))


def uint(value: int) -> str:
    """RFC 7518 §2 Base64urlUInt: the fewest octets."""
    return base64url.encode(value.to_bytes((value.bit_length() + 7) // 8, "big"))


MODULUS = int.from_bytes(base64url.decode(str(KEY["n"])), "big")


@pytest.mark.parametrize(
    "e",
    [
        uint((MODULUS >> 72) | 1),  # about 1,976 bits: each check took milliseconds
        uint(3),  # RFC 8017 allows it; FIPS 186-5 and the libraries' defaults do not
        uint((1 << 17) + 1),
        base64url.encode(b"\x00\x01\x00\x01"),  # 65537 with a leading zero octet
    ],
    ids=["as-long-as-n", "three", "another-odd", "65537-with-a-zero-octet"],
)
def test_an_rsa_key_whose_exponent_is_not_65537_is_refused(e: str) -> None:
    with pytest.raises(InvalidJwks, match="/keys/0: RSA keys must have the public exponent 65537"):
        normalize_jwks({"keys": [{**KEY, "e": e}]})


def test_a_key_generated_with_the_exponent_3_is_refused() -> None:
    numbers = rsa.generate_private_key(public_exponent=3, key_size=2048).public_key()
    jwk = {"kty": "RSA", "n": uint(numbers.public_numbers().n), "e": uint(3)}
    with pytest.raises(InvalidJwks, match="public exponent 65537"):
        normalize_jwks({"keys": [jwk]})


def test_a_4096_bit_key_is_registered() -> None:
    key = RSAKey.generate_key(4096).as_dict(private=False)
    [registered] = normalize_jwks({"keys": [key]})["keys"]
    assert (registered["n"], registered["e"]) == (key["n"], "AQAB")


def test_a_modulus_above_4096_bits_is_refused() -> None:
    large = uint((1 << 4096) + 1)  # 4097 bits
    with pytest.raises(InvalidJwks, match="/keys/0: RSA keys must have at most 4096 bits"):
        normalize_jwks(with_n(large))


# --- what a key says besides itself, and its points (decision 0075) ---------------------

EC = ECKey.generate_key("P-256").as_dict(private=False)
ED = OKPKey.generate_key("Ed25519").as_dict(private=False)


def _ed25519_small_order_points() -> list[str]:
    """The 8 points of order 1, 2, 4 or 8 (libsodium's blocklist, canonical ones), and
    the all-zero x (the point of order 4 with y = 0)."""
    small = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    ]
    return [base64url.encode(bytes.fromhex(point)) for point in small]


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "use-enc": ({**EC, "use": "enc"}, 'use must be "sig"'),
    "hs256-on-an-ec-key": ({**EC, "alg": "HS256"}, "an EC key's alg must be ES256"),
    "none-on-an-ec-key": ({**EC, "alg": "none"}, "an EC key's alg must be ES256"),
    "eddsa-on-an-ec-key": ({**EC, "alg": "EdDSA"}, "an EC key's alg must be ES256"),
    "es256-on-an-ed25519-key": ({**ED, "alg": "ES256"}, "alg must be Ed25519 or EdDSA"),
    "rs256-on-an-rsa-key": ({**KEY, "alg": "RS256"}, "an RSA key's alg must be PS256"),
    "key-ops-sign": ({**EC, "key_ops": ["sign"]}, 'key_ops must be ["verify"]'),
    "x5c-garbage": ({**EC, "x5c": ["not a certificate"]}, "leave out x5c"),
    "x5u-elsewhere": ({**EC, "x5u": "https://evil.example/cert.pem"}, "leave out x5u"),
    "jku-elsewhere": ({**EC, "jku": "https://evil.example/jwks.json"}, "leave out jku"),
    "x5t": ({**EC, "x5t#S256": "abc"}, "leave out x5t#S256"),
    "kid-5000-characters": ({**EC, "kid": "k" * 5000}, "kid must be 1 to 128"),
    "kid-confusable": ({**EC, "kid": "k\u0131d"}, "kid must be 1 to 128"),
    "kid-with-a-space": ({**EC, "kid": "key 1"}, "kid must be 1 to 128"),
    "kid-empty": ({**EC, "kid": ""}, "kid must be 1 to 128"),
    "kid-a-number": ({**EC, "kid": 7}, "kid must be 1 to 128"),
    "ec-x-truncated": ({**EC, "x": str(EC["x"])[:40]}, "x must be 32 octets"),
    # 42 characters end mid-byte: the last must leave its 4 low bits unset (RFC 4648 §3.5);
    # "B" sets one (the key's own last character left them unset 1 time in 16: a flake)
    "ec-x-not-base64url": ({**EC, "x": str(EC["x"])[:41] + "B"}, "x: not unpadded base64url"),
    "ec-x-missing": ({k: v for k, v in EC.items() if k != "x"}, "needs its coordinate x"),
    "ec-not-on-the-curve": ({**EC, "y": base64url.encode(bytes(31) + b"\x01")}, "not on the"),
    "ed25519-x-truncated": ({**ED, "x": base64url.encode(bytes(31))}, "x must be 32 octets"),
    "ed25519-y-beyond-p": (
        {**ED, "x": base64url.encode(b"\xff" * 31 + b"\x7f")},
        "not a canonical encoding",
    ),
}


@pytest.mark.parametrize(("jwk", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_a_key_that_says_too_much_or_too_little_is_refused(
    jwk: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidJwks) as refused:
        normalize_jwks({"keys": [EC, jwk]})
    assert refused.value.detail.startswith("/keys/1: ")
    assert reason in refused.value.detail


@pytest.mark.parametrize("x", _ed25519_small_order_points())
def test_an_ed25519_point_of_small_order_is_refused(x: str) -> None:
    with pytest.raises(InvalidJwks, match=r"small order|not a canonical encoding"):
        normalize_jwks({"keys": [{**ED, "x": x}]})


def test_no_refusal_of_a_key_is_left_without_a_reason() -> None:
    """A library's error with no text (a truncated EC x, in joserfc) still says why."""
    for jwk, _ in REFUSED.values():
        with pytest.raises(InvalidJwks) as refused:
            normalize_jwks({"keys": [jwk]})
        assert len(refused.value.detail) > len("/keys/0: ") + 10, refused.value.detail


ACCEPTED = {
    "es256-sig": {**EC, "alg": "ES256", "use": "sig", "kid": "k1-social.welfare:2026_12"},
    "ed25519": {**ED, "alg": "Ed25519", "key_ops": ["verify"]},
    "eddsa": {**ED, "alg": "EdDSA"},
    "ps256": {**KEY, "alg": "PS256", "kid": "r" * 128},
}


@pytest.mark.parametrize("jwk", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_a_signing_key_with_its_own_algorithm_is_registered(jwk: dict[str, Any]) -> None:
    [registered] = normalize_jwks({"keys": [jwk]})["keys"]
    assert {member: registered[member] for member in ("alg", "kid") if member in jwk} == {
        member: jwk[member] for member in ("alg", "kid") if member in jwk
    }


def test_generated_ed25519_keys_are_never_of_small_order() -> None:
    for _ in range(50):
        jwk = OKPKey.generate_key("Ed25519").as_dict(private=False)
        assert normalize_jwks({"keys": [jwk]})["keys"][0]["x"] == jwk["x"]
