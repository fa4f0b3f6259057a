"""load_json (onceonly.hub.kit.untrusted_json) reads every text as json.loads does, and
refuses depth exactly at the limit, whether or not its bracket count lets it skip the
walk."""

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onceonly.hub.kit.untrusted_json import JsonTooDeep, UnsafeJson, load_json

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='ab[]{}"\\é\x00 '),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=12,
)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 1


@settings(max_examples=300, deadline=None)
@given(value=values, limit=st.integers(min_value=1, max_value=6), as_bytes=st.booleans())
def test_a_value_reads_back_or_is_refused_for_its_depth_alone(
    value: Any, limit: int, as_bytes: bool
) -> None:
    text = json.dumps(value)
    raw = text.encode() if as_bytes else text
    if _depth(value) > limit:
        with pytest.raises(JsonTooDeep):
            load_json(raw, max_depth=limit)
    else:
        assert load_json(raw, max_depth=limit) == json.loads(raw)


@pytest.mark.parametrize(
    ("raw", "accepted"),
    [
        ("\ufeff{}", False),  # json.loads refuses a BOM in a str
        ("\ufeff{}".encode(), True),  # and accepts one in bytes
        ('{"a": 1}'.encode("utf-16"), True),  # bytes in UTF-16, as RFC 8259 allows
        (b"\xff\xfe\xfd", False),
        ('{"a": 1, "a": 2}', False),
        ("[1, 2", False),
        ('"[[[[[[[[[["', True),  # brackets in a string are no nesting
    ],
)
def test_edges_as_json_loads(raw: bytes | str, accepted: bool) -> None:
    if accepted:
        assert load_json(raw, max_depth=3) == json.loads(raw)
    else:
        with pytest.raises(UnsafeJson):
            load_json(raw, max_depth=3)
