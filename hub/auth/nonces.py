"""Stateless DPoP nonces (RFC 9449 §8, §9) that every replica agrees on.

A nonce names a time window and carries an HMAC of it under the hub's nonce key:
``base64url(window (8 bytes, big-endian) ‖ HMAC-SHA-256(key, window)[:16])``. A
nonce is accepted in its own window and the next one, so it lives between one and
two windows; no replica stores anything, and a restarted replica still agrees. The key
is derived from the hub's derivation root (``KeyLabel.DPOP_NONCE``): rotating the root
ends every nonce handed out before, and clients are asked for a new one (§8.2).
"""

import hmac

from onceonly.hub.kit import base64url

_MAC_BYTES = 16


def _mac(secret: bytes, window: int) -> bytes:
    return hmac.digest(secret, window.to_bytes(8, "big"), "sha256")[:_MAC_BYTES]


def current_nonce(secret: bytes, *, now: int, lifetime: int) -> str:
    """The nonce that the hub hands out at ``now``."""
    window = now // lifetime
    raw = window.to_bytes(8, "big") + _mac(secret, window)
    return base64url.encode(raw)


def is_fresh(nonce: str | None, secret: bytes, *, now: int, lifetime: int) -> bool:
    """Whether ``nonce`` is one the hub handed out in this window or the previous one."""
    if not nonce or len(nonce) > 64:
        return False
    try:
        raw = base64url.decode(nonce)
    except ValueError:
        return False
    if len(raw) != 8 + _MAC_BYTES:
        return False
    window = int.from_bytes(raw[:8], "big")
    if window not in (now // lifetime, now // lifetime - 1):
        return False
    return hmac.compare_digest(raw[8:], _mac(secret, window))
