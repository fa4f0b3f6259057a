"""The compatibility checker bounds its own work (decision 0059): a legal chain of
``$ref`` through ``properties``, deeper than Python's stack, or two recursive
structures of coprime periods, are not judged (422 ``compatibility-not-judged``),
never a 500. Pure tables, and the reviewer's case over HTTP on both databases.
"""

import time
from typing import Any

import pytest

from onceonly.hub.registry import compat, schema_rules

from tests.hub.registry.test_registry_refs import DRAFT, add_version, hub, item_document
from tests.hub_testing import RunningHub, problem_type

__all__ = ["hub"]  # the module-scoped hub of test_registry_refs

Json = dict[str, Any]


def chain(length: int, **more: Json) -> Json:
    """``r`` is an object whose ``a`` is an object whose ``a`` ... ``length`` deep, each
    level its own definition (written nesting: 3 levels)."""
    definitions: dict[str, Json] = {
        f"d{i}": {"type": "object", "properties": {"a": {"$ref": f"#/$defs/d{i + 1}"}}}
        for i in range(length)
    }
    definitions[f"d{length}"] = {"type": "string"}
    return {
        "$schema": DRAFT,
        "type": "object",
        "properties": {"r": {"$ref": "#/$defs/d0"}, **more},
        "additionalProperties": False,
        "$defs": definitions,
    }


def ring(length: int, *, step: int = 1, width: int = 1) -> Json:
    """A recursive structure of period ``length``: definition i's properties lead on."""
    definitions = {
        f"d{i}": {
            "type": "object",
            "properties": {
                f"p{j}": {"$ref": f"#/$defs/d{(i + step * (j + 1)) % length}"} for j in range(width)
            },
        }
        for i in range(length)
    }
    return {
        "$schema": DRAFT,
        "type": "object",
        "properties": {"r": {"$ref": "#/$defs/d0"}},
        "$defs": definitions,
    }


NOTE = {"note": {"type": "string"}}


def test_a_short_chain_is_judged() -> None:
    compat.check_compatible(chain(30, **NOTE), [chain(30)], "BACKWARD")
    with pytest.raises(compat.Incompatible):
        compat.check_compatible(chain(30), [chain(30, **NOTE)], "BACKWARD")


@pytest.mark.parametrize("length", [compat.MAX_JUDGED_DEPTH + 1, 300, 2000])
def test_a_chain_deeper_than_the_bound_is_not_judged(length: int) -> None:
    old, new = chain(length), chain(length, **NOTE)
    if len(str(new)) < schema_rules.MAX_SCHEMA_BYTES:
        schema_rules.check_schema(old)  # a legal schema: the depth limit counts writing only
    with pytest.raises(compat.CannotJudge, match="nesting deeper than 64 levels"):
        compat.check_compatible(new, [old], "BACKWARD")


@pytest.mark.parametrize(("n", "m"), [(40, 41), (300, 301)])
def test_recursive_structures_of_coprime_periods_are_not_judged(n: int, m: int) -> None:
    started = time.perf_counter()
    with pytest.raises(compat.CannotJudge, match="nesting deeper"):
        compat.check_compatible(ring(m), [ring(n)], "FULL_TRANSITIVE")
    assert time.perf_counter() - started < 2.0


def test_periods_that_meet_within_the_bound_are_judged() -> None:
    compat.check_compatible(ring(6), [ring(4)], "FULL")


def test_too_many_pairs_of_subschemas_are_not_judged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each path short (the periods meet), but many of them: the pairs are counted."""
    old, new = ring(30, step=1, width=6), ring(30, step=1, width=6)
    new["$defs"]["d0"]["title"] = "changed"  # not identical: every pair is compared
    compat.check_compatible(new, [old], "FULL")
    monkeypatch.setattr(compat, "MAX_JUDGED_PAIRS", 20)
    with pytest.raises(compat.CannotJudge, match="more than 20 pairs"):
        compat.check_compatible(new, [old], "FULL")


def test_the_reviewers_chain_is_422_over_http(hub: RunningHub) -> None:
    item = "test.ref-chain"
    with hub.admin() as admin:
        admin.put_item(item_document(item, chain(300), compatibility="BACKWARD", examples=[{}]))
        answer = add_version(hub, item, chain(300, **NOTE), [{}])
        assert (answer.status_code, problem_type(answer)) == (422, "compatibility-not-judged")
        assert "nesting deeper than 64 levels" in answer.json()["detail"]
        assert admin.call("GET", f"/v1/items/{item}")["latest_version"] == 1
