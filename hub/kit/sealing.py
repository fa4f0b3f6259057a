"""Sealed values: AES-256-GCM (NIST SP 800-38D) under a 256-bit key with a fresh 96-bit
nonce, written as unpadded base64url of ``nonce ‖ ciphertext ‖ tag``.

The associated data says what a value was sealed for (a label, a person's id): a
value presented for anything else does not open. A format that needs more (the root
that sealed a TOTP secret, ``people.credentials``) wraps the sealed text.
"""

import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from onceonly.hub.kit import base64url

NONCE_BYTES = 12  # 96 bits, the nonce length SP 800-38D §8.2 recommends
TAG_BYTES = 16


def seal(key: bytes, plaintext: bytes, *, aad: bytes) -> str:
    """``plaintext`` sealed under ``key``, bound to ``aad``."""
    nonce = os.urandom(NONCE_BYTES)
    return base64url.encode(nonce + AESGCM(key).encrypt(nonce, plaintext, aad))


def unseal(key: bytes, sealed: str, *, aad: bytes) -> bytes:
    """The plaintext of ``sealed``. ``ValueError`` for text that is not unpadded
    base64url; ``cryptography.exceptions.InvalidTag`` for a value not sealed under
    ``key`` for ``aad``, or altered."""
    raw = base64url.decode(sealed)
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        raise ValueError("too short to be a sealed value")
    return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)
