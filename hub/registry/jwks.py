"""Checking a client's public keys before they are registered. Pure, no I/O.

A client registers public keys only (no private members), of the kinds that our
client assertion algorithms use (RFC 7518 §3.4/§3.5, RFC 8037): EC P-256, OKP
Ed25519, RSA of 2048 to 4096 bits with the public exponent 65537. Each key's kid is its
RFC 7638 thumbprint unless the client names it. The RSA rule holds for DPoP proofs'
keys too (``auth.dpop``).

The same rules hold whoever registers the keys: the client itself
(``PUT /v1/clients/self/jwks``) or an administrator (``POST /v1/admin/clients``);
docs/registry.md, "Client keys", lists them (decision 0075):

- ``use``, if sent, is ``sig``; ``key_ops``, if sent, is ``["verify"]``; ``alg``, if
  sent, is one the key verifies with (``ES256``; ``Ed25519`` or ``EdDSA``; ``PS256``).
- No member that points elsewhere or carries a certificate (``x5u``, ``jku``, ``x5c``,
  ``x5t``, ``x5t#S256``): the hub fetches nothing and checks no chain, so it refuses
  them rather than store what it would never read. Other members are not stored.
- A ``kid`` is 1 to 128 of ``A-Z a-z 0-9 . _ : -``: a kid is shown to people and
  written in the log, where a confusable or invisible character would mislead.
- Each key has one spelling (:func:`check_public_key`), so one thumbprint: coordinates
  are the curve's full size (RFC 7518 §6.2.1.2, RFC 8037 §2), and an RSA modulus has no
  leading zero octet (§6.3.1.1). An EC point is on P-256, and an Ed25519 point is a
  canonical encoding of a point of the curve that is not of small order (of the 8
  points whose order divides the cofactor, a signature may verify under many messages).
"""

import re
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
# RFC 7517 §4.6-4.9 and RFC 7515 §4.1.2: keys or certificates found elsewhere
_ELSEWHERE_MEMBERS = ("x5u", "jku", "x5c", "x5t", "x5t#S256")
KID_RULE = "1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-'"
_KID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# The algorithms each key type verifies with (RFC 7518 §3.4, §3.5; RFC 8037 §3.1,
# RFC 9864 §2.2): the client assertion's (``auth.tokens.CLIENT_ALGORITHMS``)
ALGORITHMS = {"EC": ("ES256",), "OKP": ("Ed25519", "EdDSA"), "RSA": ("PS256",)}
_COORDINATE_OCTETS = 32  # P-256's x and y, and Ed25519's x

# Edwards25519 (RFC 8032 §5.1): -x^2 + y^2 = 1 + d x^2 y^2 over GF(p)
_P = 2**255 - 19
_D = (-121665 * pow(121666, -1, _P)) % _P
_SQRT_MINUS_ONE = pow(2, (_P - 1) // 4, _P)
_IDENTITY = (0, 1)


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


def _coordinate(jwk: Mapping[str, Any], member: str) -> bytes:
    """A curve coordinate: unpadded base64url of exactly the curve's size."""
    value = jwk.get(member)
    if not isinstance(value, str):
        raise ValueError(f"the key needs its coordinate {member}")
    try:
        octets = base64url.decode(value)
    except ValueError as error:
        raise ValueError(f"{member}: {error}") from None
    if len(octets) != _COORDINATE_OCTETS:
        raise ValueError(
            f"{member} must be {_COORDINATE_OCTETS} octets (RFC 7518 §6.2.1.2, RFC 8037 §2),"
            f" not {len(octets)}"
        )
    return octets


def _edwards_point(encoded: bytes) -> tuple[int, int] | None:
    """The point an Ed25519 public key encodes (RFC 8032 §5.1.3), or None if it
    encodes none canonically."""
    y = int.from_bytes(encoded, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, -1, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_MINUS_ONE % _P
    if (x * x - x2) % _P or (x == 0 and sign):
        return None
    return (_P - x if x & 1 != sign else x), y


def _double(point: tuple[int, int]) -> tuple[int, int]:
    x, y = point
    t = _D * x * x * y * y % _P
    return 2 * x * y * pow(1 + t, -1, _P) % _P, (y * y + x * x) * pow(1 - t, -1, _P) % _P


def check_ed25519_point(encoded: bytes) -> None:
    """ValueError unless ``encoded`` is a canonical Ed25519 point whose order is more
    than 8: 8·P is the identity exactly for the 8 small-order points."""
    point = _edwards_point(encoded)
    if point is None:
        raise ValueError("x is not a canonical encoding of a point of Ed25519")
    for _ in range(3):
        point = _double(point)
    if point == _IDENTITY:
        raise ValueError("x is a point of small order, which no signature should verify with")


def _check_members(jwk: Mapping[str, Any], kty: str) -> None:
    """The members beside the key itself: what it is for, and where else it is."""
    elsewhere = [member for member in _ELSEWHERE_MEMBERS if member in jwk]
    if elsewhere:
        raise ValueError(
            f"the hub neither fetches keys nor checks certificates: leave out {elsewhere[0]}"
        )
    if "use" in jwk and jwk["use"] != "sig":
        raise ValueError('a client key is for signatures: use must be "sig" if sent')
    if "key_ops" in jwk and jwk["key_ops"] != ["verify"]:
        raise ValueError('a client public key verifies: key_ops must be ["verify"] if sent')
    allowed = ALGORITHMS[kty]
    if "alg" in jwk and jwk["alg"] not in allowed:
        raise ValueError(f"an {kty} key's alg must be {' or '.join(allowed)} if sent")
    kid = jwk.get("kid")
    if "kid" in jwk and not (isinstance(kid, str) and _KID.fullmatch(kid)):
        raise ValueError(f"kid must be {KID_RULE}")


def check_public_key(jwk: Mapping[str, Any]) -> None:
    """The key's own members, of a key whose ``kty`` (and ``crv``) the caller checked, in
    their one spelling, so that a key has one RFC 7638 thumbprint: an EC P-256 ``x`` and
    ``y`` and an Ed25519 ``x`` of exactly 32 octets, the Ed25519 point canonical and not
    of small order; an RSA key as :func:`check_rsa_key` says, its ``n`` without a
    leading zero octet. ValueError with the member and the rule if not. Registered keys
    and DPoP proofs' keys alike. (A key registered before the rule on ``n`` is still
    used: ``auth.tokens`` asks only :func:`check_rsa_key` of it.)"""
    kty = jwk.get("kty")
    if kty == "EC":
        for member in ("x", "y"):
            _coordinate(jwk, member)
    elif kty == "OKP":
        check_ed25519_point(_coordinate(jwk, "x"))
    elif kty == "RSA":
        check_rsa_key(jwk)
        if base64url.decode(jwk["n"])[0] == 0:  # RFC 7518 §2 Base64urlUInt
            raise ValueError("n must be written without a leading zero octet (RFC 7518 §6.3.1.1)")


def _import(jwk: dict[str, Any]) -> ECKey | OKPKey | RSAKey:
    kty = jwk.get("kty")
    if kty == "EC" and jwk.get("crv") == "P-256":
        _check_members(jwk, kty)
        check_public_key(jwk)
        return ECKey.import_key(jwk)  # cryptography refuses a point not on the curve
    if kty == "OKP" and jwk.get("crv") == "Ed25519":
        _check_members(jwk, kty)
        check_public_key(jwk)
        return OKPKey.import_key(jwk)
    if kty == "RSA":
        _check_members(jwk, kty)
        check_public_key(jwk)
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
            raise InvalidJwks(f"/keys/{position}: {_reason(error)}") from None
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


def _reason(error: Exception) -> str:
    """Why a key was refused, never empty (a library's error may carry no text)."""
    text = str(error).strip()
    if isinstance(error, KeyError) or not text:
        return f"the key cannot be loaded ({type(error).__name__}: a member is missing or wrong)"
    return text[:200]


def key_set(jwks: dict[str, Any]) -> KeySet:
    return KeySet.import_key_set(jwks)  # type: ignore[arg-type]
