"""Unpadded base64url (RFC 4648 §5 without "=", RFC 7515 §2): what it writes, and that it
reads only that, refusing padding, the standard alphabet's "+" and "/", and anything
outside the alphabet."""

import pytest

from onceonly.hub.kit import base64url

# RFC 4648 §10's vectors, unpadded, and the two characters that differ from base64.
ENCODED = [
    (b"", ""),
    (b"f", "Zg"),
    (b"fo", "Zm8"),
    (b"foo", "Zm9v"),
    (b"foob", "Zm9vYg"),
    (b"fooba", "Zm9vYmE"),
    (b"foobar", "Zm9vYmFy"),
    (b"\xfb\xff", "-_8"),
]
REFUSED = [
    "Zg==",  # padded
    "Zm8=",
    "-_8=",
    "+/8",  # the standard alphabet
    "Zm9v+",
    "a/bc",
    "Z",  # no whole byte
    "Zm9vY",
    "Zm9v!",
    "Zm 9v",
    "Zm9v\n",
    "Zm9vé",
]


@pytest.mark.parametrize(("raw", "text"), ENCODED)
def test_writes_unpadded_base64url_and_reads_it_back(raw: bytes, text: str) -> None:
    assert base64url.encode(raw) == text
    assert base64url.decode(text) == raw


@pytest.mark.parametrize("length", range(70))
def test_every_length_round_trips_without_padding(length: int) -> None:
    raw = bytes(range(256))[-length:] if length else b""
    text = base64url.encode(raw)
    assert "=" not in text
    assert base64url.decode(text) == raw


@pytest.mark.parametrize("text", REFUSED)
def test_refuses_anything_but_unpadded_base64url(text: str) -> None:
    with pytest.raises(ValueError, match="not unpadded base64url"):
        base64url.decode(text)
