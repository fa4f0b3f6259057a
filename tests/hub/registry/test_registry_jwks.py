"""A client's keys are checked before they are registered (``registry.jwks``): an RSA
modulus is measured as unpadded base64url (RFC 7518 §6.3.1.1), so a padded or
standard-alphabet ``n`` is refused with a detail that says so, and a weak key is
refused before it is loaded. An RSA key has the public exponent 65537 and at most
4096 bits (decision 0009): a larger exponent makes each of its signature checks slow."""

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import RSAKey

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
