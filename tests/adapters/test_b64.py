"""The SDK's copy of unpadded base64url (it never imports the hub) reads and writes
exactly what the hub's ``kit.base64url`` does: the same table, and the same answer for
any text and any bytes."""

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onceonly.adapters import _b64, _commitment
from onceonly.hub.kit import base64url

from tests.hub.kit.test_base64url import ENCODED, REFUSED


@pytest.mark.parametrize(("raw", "text"), ENCODED)
def test_writes_and_reads_the_rfc_vectors(raw: bytes, text: str) -> None:
    assert _b64.encode(raw) == text
    assert _b64.decode(text) == raw


@pytest.mark.parametrize("text", REFUSED)
def test_refuses_what_the_hub_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not unpadded base64url"):
        _b64.decode(text)


@given(st.binary(max_size=80))
def test_writes_what_the_hub_writes(raw: bytes) -> None:
    assert _b64.encode(raw) == base64url.encode(raw)


def _answer(decode: Callable[[str], bytes], text: str) -> bytes | str:
    try:
        return decode(text)
    except ValueError as error:
        return str(error)


@given(st.text(alphabet="AZaz09-_+/=!é \n", max_size=12))
def test_reads_any_text_as_the_hub_does(text: str) -> None:
    assert _answer(_b64.decode, text) == _answer(base64url.decode, text)


def test_a_commitment_opens_under_the_key_as_the_hub_hands_it_out() -> None:
    key = base64url.encode(bytes(range(32)))  # as the hub's receipt carries it
    record = {"name": "Mari", "n": 1}
    commitment = _commitment.commit(key, record)
    assert _commitment.opens(commitment, key=key, record=record)
    assert not _commitment.opens(commitment, key=key, record={**record, "n": 2})


@pytest.mark.parametrize("key", ["AAEC=", "AA+/", "AAECAwQ!", "AAECA"])
def test_a_commitment_key_that_is_not_unpadded_base64url_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="a commitment key is base64url"):
        _commitment.commit(key, {"n": 1})
    assert not _commitment.opens("hmac-sha256:x", key=key, record={"n": 1})
