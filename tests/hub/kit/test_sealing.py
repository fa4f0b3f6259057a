"""Sealed values (kit.sealing): AES-256-GCM, written as unpadded base64url of nonce,
ciphertext and tag. A value opens only under its key, for its associated data, as
written; anything else is refused, never opened to something else."""

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from onceonly.hub.kit import base64url, sealing

KEY = bytes(range(32))
AAD = b"onceonly/v1/test"


def test_a_sealed_value_opens_under_its_key_for_its_associated_data() -> None:
    sealed = sealing.seal(KEY, b"a secret", aad=AAD)
    assert b"a secret" not in base64url.decode(sealed)
    assert sealing.unseal(KEY, sealed, aad=AAD) == b"a secret"


def test_the_format_is_nonce_ciphertext_and_tag_in_unpadded_base64url() -> None:
    sealed = sealing.seal(KEY, b"plain", aad=AAD)
    raw = base64url.decode(sealed)
    assert len(raw) == sealing.NONCE_BYTES + len(b"plain") + sealing.TAG_BYTES
    nonce, box = raw[: sealing.NONCE_BYTES], raw[sealing.NONCE_BYTES :]
    assert AESGCM(KEY).decrypt(nonce, box, AAD) == b"plain"


def test_each_seal_takes_a_fresh_nonce() -> None:
    assert sealing.seal(KEY, b"same", aad=AAD) != sealing.seal(KEY, b"same", aad=AAD)


@pytest.mark.parametrize(
    ("key", "aad"), [(bytes(32), AAD), (KEY, b"onceonly/v1/other"), (KEY, b"")]
)
def test_another_key_or_associated_data_does_not_open_it(key: bytes, aad: bytes) -> None:
    sealed = sealing.seal(KEY, b"a secret", aad=AAD)
    with pytest.raises(InvalidTag):
        sealing.unseal(key, sealed, aad=aad)


def test_an_altered_value_does_not_open() -> None:
    raw = bytearray(base64url.decode(sealing.seal(KEY, b"a secret", aad=AAD)))
    raw[-1] ^= 1
    with pytest.raises(InvalidTag):
        sealing.unseal(KEY, base64url.encode(bytes(raw)), aad=AAD)


@pytest.mark.parametrize("text", ["", "AAAA", base64url.encode(bytes(27)), "not sealed!"])
def test_text_that_cannot_be_a_sealed_value_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"sealed value|base64url"):
        sealing.unseal(KEY, text, aad=AAD)


def test_padding_is_refused() -> None:
    sealed = sealing.seal(KEY, b"x", aad=AAD)  # 29 bytes: base64 would pad it
    with pytest.raises(ValueError, match="not unpadded base64url"):
        sealing.unseal(KEY, sealed + "=" * (-len(sealed) % 4), aad=AAD)
