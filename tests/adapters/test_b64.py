"""Unpadded base64url, the wire's one implementation (``onceonly.adapters.base64url``,
which the hub's ``kit.base64url`` re-exports): the RFC table, strict decoding, and the
hub's name for it is the very same code."""

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
