"""Checking a client's public keys before they are registered. Pure, no I/O.

A client registers public keys only (no private members), of the kinds that our
client assertion algorithms use (RFC 7518 §3.4/§3.5, RFC 8037): EC P-256, OKP
Ed25519, RSA of 2048 to 4096 bits with the public exponent 65537. Each key's kid is its
RFC 7638 thumbprint unless the client names it. The RSA rule holds for DPoP proofs'
keys too (``auth.dpop``).
"""

from collections.abc import Mapping
from typing import Any

from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

from onceonly.hub.kit import base64url
from onceonly.hub.registry.exceptions import InvalidJwks

MAX_KEYS = 5
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 4096
# 65537 in the one spelling of RFC 7518 §2's Base64urlUInt (the fewest octets)
RSA_EXPONENT = "AQAB"
_PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def check_rsa_key(jwk: Mapping[str, Any]) -> None:
    """The RSA public keys the hub verifies with (decision 0009): the public exponent
    ``e`` (RFC 7518 §6.3.1.2) is 65537, and the modulus ``n`` (§6.3.1.1) has 2048
    (§3.5) to 4096 bits; ValueError with the reason if not.

    Read on the members before the key is built, so that a key refused is never
    loaded and no signature is checked with it. A signature check costs more the
    larger ``e`` is: with an ``e`` of 3,000 bits, 7 ms, against 0.3 ms with 65537.
    """
    if jwk.get("e") != RSA_EXPONENT:
        raise ValueError(f"RSA keys must have the public exponent 65537 (e = {RSA_EXPONENT})")
    n = jwk.get("n")
    if not isinstance(n, str):
        raise ValueError("an RSA key needs its modulus n")
    bits = int.from_bytes(base64url.decode(n), "big").bit_length()
    if bits < MIN_RSA_BITS:
        raise ValueError(f"RSA keys must have at least {MIN_RSA_BITS} bits")
    if bits > MAX_RSA_BITS:
        raise ValueError(f"RSA keys must have at most {MAX_RSA_BITS} bits")


def _import(jwk: dict[str, Any]) -> ECKey | OKPKey | RSAKey:
    kty = jwk.get("kty")
    if kty == "EC" and jwk.get("crv") == "P-256":
        return ECKey.import_key(jwk)
    if kty == "OKP" and jwk.get("crv") == "Ed25519":
        return OKPKey.import_key(jwk)
    if kty == "RSA":
        check_rsa_key(jwk)
        return RSAKey.import_key(jwk)
    raise ValueError("only EC P-256, OKP Ed25519 and RSA keys are accepted")


def normalize_jwks(jwks: dict[str, Any]) -> dict[str, Any]:
    """The JWKS as the hub stores it (each key with a kid), or InvalidJwks."""
    keys = jwks.get("keys")
    if not isinstance(keys, list) or not 1 <= len(keys) <= MAX_KEYS:
        raise InvalidJwks(f'jwks must be {{"keys": [...]}} with 1 to {MAX_KEYS} keys')
    normalized = []
    for position, jwk in enumerate(keys):
        if not isinstance(jwk, dict):
            raise InvalidJwks(f"/keys/{position}: not a JSON object")
        if _PRIVATE_MEMBERS & jwk.keys():
            raise InvalidJwks(f"/keys/{position}: private key material must never be sent")
        try:
            key = _import(jwk)
        except (ValueError, TypeError, KeyError) as error:
            raise InvalidJwks(f"/keys/{position}: {error}") from None
        public = key.as_dict(private=False)
        public["kid"] = str(jwk.get("kid") or key.thumbprint())
        for member in ("alg", "use"):
            if member in jwk:
                public[member] = jwk[member]
        normalized.append(public)
    kids = [k["kid"] for k in normalized]
    if len(set(kids)) != len(kids):
        raise InvalidJwks("two keys share one kid")
    return {"keys": normalized}


def key_set(jwks: dict[str, Any]) -> KeySet:
    return KeySet.import_key_set(jwks)  # type: ignore[arg-type]
