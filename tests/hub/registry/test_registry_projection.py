"""Strict projection (a record cut down to the version a grant was decided on) reads
schemas as the hub's validator reads them: what every subschema that applies to a
member says of it, patterns matched with the validator's ECMA-262 engine. Pure calls;
the exchange's own tests (tests/hub/exchange/test_exchange_granted_members.py) show the
same over the wire."""

from typing import Any

from onceonly.hub.exchange.owner import MAX_ANSWER_DEPTH
from onceonly.hub.registry.projection import (
    MAX_DEPTH,
    project_to_version,
    strict_projection_is_identity,
)

Json = Any
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _root(properties: dict[str, Json]) -> Json:
    return {
        "$schema": DRAFT,
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }


def test_a_pattern_is_matched_as_the_validator_matches_it() -> None:
    """Python's ``$`` matches before a final newline, ECMA-262's does not: ``"ssn\\n"``
    is not a member ``^[a-z]+$`` declares, and a closed object drops it (helper-147:
    Python's ``re`` kept it, and its backtracking could be made to take seconds)."""
    schema = _root(
        {
            "p": {
                "type": "object",
                "additionalProperties": False,
                "patternProperties": {"^[a-z]+$": {"type": "string"}},
            }
        }
    )
    record = {"p": {"ok": "x", "ssn\n": "49002124277"}}
    assert project_to_version(record, schema, strict=True) == {"p": {"ok": "x"}}
    assert project_to_version(record, schema) == {"p": {"ok": "x"}}


def test_a_member_is_cut_by_every_branch_that_names_it() -> None:
    """helper-147: the first ``allOf`` branch that named ``q`` (an open object) was the
    one projection used, though a later branch closes it."""
    closed_q = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"a": {"type": "string"}},
    }
    schema = _root(
        {
            "p": {
                "allOf": [
                    {"properties": {"q": {"type": "object"}}},
                    {"properties": {"q": closed_q}},
                ]
            }
        }
    )
    record = {"p": {"q": {"a": "x", "ssn": "49002124277"}}}
    assert project_to_version(record, schema, strict=True) == {"p": {"q": {"a": "x"}}}


def test_a_maps_values_are_projected_and_the_identity_skip_knows_it() -> None:
    person = {"type": "object", "properties": {"name": {"type": "string"}}}
    schema = _root({"household": {"type": "object", "additionalProperties": person}})
    record = {"household": {"spouse": {"name": "Ann", "national_id": "49002124277"}}}
    assert project_to_version(record, schema, strict=True) == {
        "household": {"spouse": {"name": "Ann"}}
    }
    # the value schema lists properties and says nothing of others: projection may cut
    assert not strict_projection_is_identity(schema, fingerprint="open-map", fields=None)
    person["additionalProperties"] = False  # closed: a valid record keeps everything
    assert strict_projection_is_identity(schema, fingerprint="closed-map", fields=None)


def test_projection_reaches_as_deep_as_any_answer_and_drops_what_is_deeper() -> None:
    node = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"name": {"type": "string"}, "c": {"$ref": "#/$defs/node"}},
    }
    schema = {**_root({"t": {"$ref": "#/$defs/node"}}), "$defs": {"node": node}}
    assert MAX_DEPTH >= MAX_ANSWER_DEPTH
    chain: Json = {"name": "x", "ssn": "49002124277"}
    for _ in range(MAX_DEPTH - 1):
        chain = {"name": "x", "c": chain}
    kept = project_to_version({"t": chain}, schema, strict=True)["t"]
    for _ in range(MAX_DEPTH - 1):
        kept = kept["c"]
    assert kept == {"name": "x"}
    # one level more than any answer has: that level is dropped, never delivered uncut
    deeper = project_to_version({"t": {"name": "x", "c": chain}}, schema, strict=True)["t"]
    for _ in range(MAX_DEPTH - 1):
        deeper = deeper["c"]
    assert deeper == {"name": "x"}
