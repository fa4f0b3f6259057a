"""A client's keys are checked before they are registered (``registry.jwks``): an RSA
modulus is measured as unpadded base64url (RFC 7518 §6.3.1.1), so a padded or
standard-alphabet ``n`` is refused with a detail that says so, and a weak key is
refused before it is loaded."""

from typing import Any

import pytest
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
