"""ES256 (RFC 7518 §3.4) compact JWS signatures straight through ``cryptography``.

The hub's hot path signs a request token and checks a DPoP proof on every exchange; a
JOSE library's general machinery around the one ECDSA operation cost as much as the
operation itself. These two functions do only the signature: the caller checks the
header (``alg``, ``crit``, ``b64``) and the key's fitness for ES256 itself.
"""

import json
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from onceonly.hub.kit import base64url

_HALF = 32  # bytes of R, and of S, on P-256 (RFC 7518 §3.4)
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
# json.dumps(value, separators=(",", ":")), without a new encoder for every call
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":")).encode


def holds(key: ec.EllipticCurvePublicKey, compact: str) -> bool:
    """Whether the compact JWS ``compact`` (three parts) carries a valid ES256 signature
    by ``key`` over its first two parts: R and S of 32 bytes each, in the one unpadded
    base64url spelling of those bytes (``base64url.decode`` refuses a spelling with other
    unused low bits, as joserfc refuses it; decision 0041)."""
    signing_input, _, signature_part = compact.rpartition(".")
    try:
        signature = base64url.decode(signature_part)
        signed = signing_input.encode("ascii")
    except (ValueError, UnicodeError):
        return False
    if len(signature) != 2 * _HALF:
        return False
    r = int.from_bytes(signature[:_HALF], "big")
    s = int.from_bytes(signature[_HALF:], "big")
    try:
        key.verify(encode_dss_signature(r, s), signed, _ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True


def sign(
    key: ec.EllipticCurvePrivateKey, header: Mapping[str, object], claims: Mapping[str, object]
) -> str:
    """A compact JWS of ``claims`` under ``header`` (which names ES256), signed by ``key``."""
    if not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("ES256 needs a P-256 key")
    signing_input = f"{_part(header)}.{_part(claims)}"
    r, s = decode_dss_signature(key.sign(signing_input.encode("ascii"), _ECDSA_SHA256))
    signature = r.to_bytes(_HALF, "big") + s.to_bytes(_HALF, "big")
    return f"{signing_input}.{base64url.encode(signature)}"


def _part(value: Mapping[str, object]) -> str:
    return base64url.encode(_COMPACT_JSON(value).encode("ascii"))
