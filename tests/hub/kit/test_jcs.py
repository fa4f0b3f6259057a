"""RFC 8785 canonical JSON (onceonly.hub.kit.jcs): byte-equal to the ``rfc8785`` package
for any JSON value, whichever way it is encoded, and equal to the RFC's vectors."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from onceonly.hub.audit import leaves
from onceonly.hub.kit import jcs
from onceonly.hub.kit.jcs import canonical_json

VECTORS = Path(__file__).resolve().parents[4] / "shared" / "testdata" / "jcs" / "testdata"
SAFE = 2**53 - 1

# Strings of any code point but lone surrogates, weighted towards what needs escaping
# or sorts differently in UTF-16 (controls, quotes, U+007F, U+2028, U+E000-U+FFFF, astral).
_TRICKY = st.sampled_from(
    ['"', "\\", "\x00", "\x1f", "\x7f", "\u2028", "\ue000", "\uffff", "\U0001f600", "é", "/"]
)
_TEXT = st.lists(st.one_of(st.characters(exclude_categories=["Cs"]), _TRICKY), max_size=8).map(
    "".join
)
_ASCII_KEYS = st.text(st.characters(max_codepoint=127), max_size=6)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-SAFE, max_value=SAFE),
    st.integers(min_value=-(2**60), max_value=2**60),  # past 2**53: rfc8785 refuses
    st.floats(allow_nan=False, allow_infinity=False),
    _TEXT,
)


def _values(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        _SCALARS,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)
        ),
        max_leaves=12,
    )


def _reference(value: Any) -> bytes | type[Exception]:
    try:
        return rfc8785.dumps(value)
    except Exception as error:
        return type(error)


def _ours(value: Any) -> bytes | type[Exception]:
    try:
        return canonical_json(value)
    except Exception as error:
        return type(error)


@given(_values(_ASCII_KEYS))
def test_equals_rfc8785_for_values_with_ascii_member_names(value: Any) -> None:
    assert _ours(value) == _reference(value)


@given(_values(_TEXT))
def test_equals_rfc8785_for_any_member_names(value: Any) -> None:
    """Names past U+FFFF sort differently in UTF-16 than by code point (§3.2.3)."""
    assert _ours(value) == _reference(value)


@pytest.mark.parametrize(
    "value",
    [
        {"\ue000": 1, "\U0001f600": 2},  # UTF-16 puts the astral name first
        {"a": 2**53},
        {"a": -(2**53)},
        [1.0, 0.1, 1e21, -0.0],
        {"a": "\ud800"},  # a lone surrogate: not UTF-8
        ("a", "tuple"),
        {1: "non-string name"},
    ],
)
def test_equals_rfc8785_past_the_fast_encodings_reach(value: Any) -> None:
    assert _ours(value) == _reference(value)


def test_an_audit_entry_takes_the_fast_encoding() -> None:
    entry = leaves.build_entry(
        time=datetime(2026, 1, 2, tzinfo=UTC),
        action="record.query",
        outcome="ok",
        purpose="p",
        fields=["city", "street"],
        owner_ms=12,
    )
    assert jcs._plain(entry)
    assert not jcs._plain({"a": 1.5})
    assert not jcs._plain({"é": 1})
    assert not jcs._plain([2**53])


def _vectors() -> list[str]:
    if not (VECTORS / "input").is_dir():
        return []
    return sorted(p.name for p in (VECTORS / "input").glob("*.json"))


@pytest.mark.skipif(not _vectors(), reason=f"RFC 8785 vectors not found at {VECTORS} (../shared)")
@pytest.mark.parametrize("name", _vectors())
def test_equals_the_rfc8785_vectors(name: str) -> None:
    value = json.loads((VECTORS / "input" / name).read_text(encoding="utf-8"))
    assert canonical_json(value) == (VECTORS / "output" / name).read_bytes()


def test_a_value_that_contains_itself_fails_instead_of_looping() -> None:
    """Only code can build one (parsed JSON cannot); the fast path's walk is bounded and
    rfc8785 refuses it."""
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(RecursionError):
        canonical_json(looped)
