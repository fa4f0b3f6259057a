"""Unpadded base64url, the wire's one implementation (``onceonly.adapters.base64url``,
which the hub's ``kit.base64url`` re-exports): the RFC table, strict decoding (one text
for each byte string: RFC 4648 §3.5's unused bits must be zero), and the hub's name for
it is the very same code."""

import base64
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onceonly.adapters import _commitment
from onceonly.adapters import base64url as sdk_base64url
from onceonly.hub.kit import base64url

from tests.hub.kit.test_base64url import ENCODED, REFUSED


@pytest.mark.parametrize(("raw", "text"), ENCODED)
def test_writes_and_reads_the_rfc_vectors(raw: bytes, text: str) -> None:
    assert sdk_base64url.encode(raw) == text
    assert sdk_base64url.decode(text) == raw


@pytest.mark.parametrize("text", REFUSED)
def test_refuses_what_the_hub_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not unpadded base64url"):
        sdk_base64url.decode(text)


def test_the_hub_uses_the_same_code() -> None:
    assert base64url.encode is sdk_base64url.encode
    assert base64url.decode is sdk_base64url.decode


@given(st.binary(max_size=80))
def test_reads_back_what_it_writes(raw: bytes) -> None:
    assert sdk_base64url.decode(sdk_base64url.encode(raw)) == raw


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def other_spellings(text: str) -> list[str]:
    """``text`` with its last character's unused bits (RFC 4648 §3.5) set in every other
    way: 15 of them after 2 characters of a group (4 bits), 3 after 3 (2 bits)."""
    unused = {2: 0b1111, 3: 0b11}.get(len(text) % 4, 0)
    value = ALPHABET.index(text[-1]) if text else 0
    return [text[:-1] + ALPHABET[value | bits] for bits in range(1, unused + 1)]


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("QQ", ["QR", "QS", "QT", "QU", "QV", "QW", "QX", "QY", "QZ", "Qa", "Qb", "Qc",
                "Qd", "Qe", "Qf"]),
        ("Zg", ["Zh", "Zi", "Zj", "Zk", "Zl", "Zm", "Zn", "Zo", "Zp", "Zq", "Zr", "Zs",
                "Zt", "Zu", "Zv"]),
        ("Zm8", ["Zm9", "Zm-", "Zm_"]),
        ("-_8", ["-_9", "-_-", "-__"]),
    ],
)  # fmt: skip
def test_refuses_unused_bits_that_are_not_zero(text: str, refused: list[str]) -> None:
    """RFC 4648 §3.5: "QR" decoded leniently is b"A", as "QQ" is: two texts for one
    byte string, which a signature or a MAC over the text would tell apart."""
    assert other_spellings(text) == refused
    raw = sdk_base64url.decode(text)
    for other in refused:
        assert base64.urlsafe_b64decode(other + "==") == raw  # what lenient decoding reads
        with pytest.raises(ValueError, match="not unpadded base64url"):
            sdk_base64url.decode(other)


@pytest.mark.parametrize("length", [1, 2, 4, 5, 31, 32, 64, 65])
def test_accepts_the_one_spelling_of_each_length_and_refuses_the_others(length: int) -> None:
    for raw in (bytes(length), b"\xff" * length, bytes(range(256))[:length]):
        text = sdk_base64url.encode(raw)
        assert sdk_base64url.decode(text) == raw
        others = other_spellings(text)
        assert len(others) == {1: 15, 2: 3}.get(length % 3, 0)
        for other in others:
            with pytest.raises(ValueError, match="not unpadded base64url"):
                sdk_base64url.decode(other)


def test_of_all_two_character_texts_reads_only_what_it_writes() -> None:
    """All 4,096: the 256 that ``encode`` writes for one byte are read, no other."""
    read = set()
    for pair in itertools.product(ALPHABET, repeat=2):
        text = "".join(pair)
        try:
            raw = sdk_base64url.decode(text)
        except ValueError:
            continue
        read.add(text)
        assert sdk_base64url.encode(raw) == text
    assert read == {sdk_base64url.encode(bytes([byte])) for byte in range(256)}


@given(st.text(alphabet=ALPHABET, max_size=24))
def test_any_text_it_reads_is_the_one_it_writes(text: str) -> None:
    try:
        raw = sdk_base64url.decode(text)
    except ValueError:
        return
    assert sdk_base64url.encode(raw) == text


def test_a_commitment_opens_under_the_key_as_the_hub_hands_it_out() -> None:
    key = base64url.encode(bytes(range(32)))  # as the hub's receipt carries it
    record = {"name": "Mari", "n": 1}
    commitment = _commitment.commit(key, record)
    assert _commitment.opens(commitment, key=key, record=record)
    assert not _commitment.opens(commitment, key=key, record={**record, "n": 2})


@pytest.mark.parametrize("key", ["AAEC=", "AA+/", "AAECAwQ!", "AAECA", "AAECAx", "AAB"])
def test_a_commitment_key_that_is_not_unpadded_base64url_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="a commitment key is base64url"):
        _commitment.commit(key, {"n": 1})
    assert not _commitment.opens("hmac-sha256:x", key=key, record={"n": 1})


def test_the_hub_takes_it_without_the_sdks_web_stack() -> None:
    """``onceonly.adapters`` loads its names on first use: the hub's kit (and a command
    line that needs only base64url) does not pay for the provider's imports."""
    import subprocess
    import sys

    code = (
        "import sys; import onceonly.hub.kit.base64url;"
        " print(sorted(m for m in ('httpx', 'fastapi', 'sqlalchemy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
