"""Strict projection (a record cut down to the version a grant was decided on) reads
schemas as the hub's validator reads them: what every subschema that applies to a
member says of it, patterns matched with the validator's ECMA-262 engine. Pure calls;
the exchange's own tests (tests/hub/exchange/test_exchange_granted_members.py) show the
same over the wire."""

from typing import Any

import pytest

from onceonly.hub.exchange.owner import MAX_ANSWER_DEPTH
from onceonly.hub.registry import projection, validation
from onceonly.hub.registry.projection import (
    MAX_DEPTH,
    MAX_PARTS,
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


# --- helper-156's review of the first version ------------------------------------------


def test_a_false_schema_keeps_nothing() -> None:
    """``ssn: false`` and ``items: false`` in the granted version: a value there was
    delivered whole (a non-object schema was taken for ``true``)."""
    address = {"type": "object", "properties": {"street": {"type": "string"}, "ssn": False}}
    schema = _root({"address": address, "tags": {"type": "array", "items": False}})
    record = {"address": {"street": "Main 1", "ssn": "010101-123X"}, "tags": [{"nin": "AB1"}]}
    assert project_to_version(record, schema, strict=True) == {"address": {"street": "Main 1"}}


def test_a_part_that_closes_the_object_drops_what_it_does_not_name() -> None:
    """``additionalProperties: false`` beside an ``allOf`` branch that is a map, a
    pattern or ``true``, or beside a ``$ref``: the branch "declared" the member and it
    was kept, though the validator refuses it."""
    closed = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"a": {"type": "string"}},
    }
    for branch in (
        {"additionalProperties": {"type": "string"}},
        {"patternProperties": {"^s": {"type": "string"}}},
        True,
    ):
        schema = _root({"p": {**closed, "allOf": [branch]}})
        kept = project_to_version({"p": {"a": "x", "ssn": "1"}}, schema, strict=True)
        assert kept == {"p": {"a": "x"}}, branch
    beside_ref = {**closed, "$ref": "#/$defs/open"}
    schema = {**_root({"p": beside_ref}), "$defs": {"open": {"type": "object"}}}
    for strict in (True, False):
        kept = project_to_version({"p": {"a": "x", "ssn": "1"}}, schema, strict=strict)
        assert kept == {"p": {"a": "x"}}, strict


def test_a_member_several_parts_name_is_read_once_not_once_a_part() -> None:
    """A node naming its child in itself and in an ``allOf`` branch: each level's member
    was projected once per part, 2^depth in all (18 levels took 2.5 s with the GIL held).
    Now each value is read through its parts at once: the reads grow with the depth."""
    node = {
        "type": "object",
        "properties": {"c": {"$ref": "#/$defs/n"}},
        "allOf": [{"properties": {"c": {"$ref": "#/$defs/n"}}}],
    }
    schema = {**_root({"t": {"$ref": "#/$defs/n"}}), "$defs": {"n": node}}
    chain: Json = {"ssn": "1"}
    for _ in range(40):
        chain = {"c": chain}
    reads, kept = _reads(schema, {"t": chain})
    assert reads <= 2 * 42
    for _ in range(41):  # the field, then its 40 levels
        kept = kept["t"] if "t" in kept else kept["c"]
    assert kept == {}


def test_the_identity_skip_is_safe_and_never_a_recursion_error() -> None:
    """A ``oneOf`` whose branch closes an object the other leaves open: the skip kept
    what projection cuts. A chain of 1,100 references: RecursionError, a 500 on every
    query of the item."""
    one_of = _root({"f": {"oneOf": [{"additionalProperties": False}, {"type": "object"}]}})
    assert not strict_projection_is_identity(one_of, fingerprint="one-of", fields=None)
    chain = {
        f"d{i}": {"type": "object", "additionalProperties": {"$ref": f"#/$defs/d{i + 1}"}}
        for i in range(1100)
    }
    chain["d1100"] = {"type": "string"}
    schema = {**_root({"a": {"$ref": "#/$defs/d0"}}), "$defs": chain}
    assert strict_projection_is_identity(schema, fingerprint="chain", fields=None)


def test_a_schema_with_more_parts_than_projection_reads_drops_the_value() -> None:
    closing = {"additionalProperties": False, "properties": {"a": {"type": "string"}}}
    many = {"type": "object", "allOf": [{} for _ in range(MAX_PARTS)] + [closing]}
    kept = project_to_version({"p": {"a": "x", "ssn": "1"}}, _root({"p": many}), strict=True)
    assert kept == {}


# --- helper-158's review of the second version -------------------------------------------


def _reads(schema: Json, record: Json) -> tuple[int, Json]:
    """How many sets of schemas strict projection gathers for ``record``, and what it
    keeps."""
    reads = 0
    gather = projection._Reading._gather

    def counted(*args: Any) -> Any:
        nonlocal reads
        reads += 1
        return gather(*args)

    projection._Reading._gather = counted  # type: ignore[method-assign]
    try:
        kept = project_to_version(record, schema, strict=True)
    finally:
        projection._Reading._gather = gather  # type: ignore[method-assign]
    return reads, kept


def test_each_set_of_schemas_is_read_once_however_many_values_meet_it() -> None:
    """20,000 elements through a chain of 127 references, or 126 ``allOf`` branches:
    each element's schemas were gathered again (7.8 s, 1.3 s: the event loop held). Now
    each distinct set of schemas is read once a projection."""
    chain = {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(127)}
    chain["d127"] = {"type": "integer"}
    branches = {"d0": {"allOf": [{"$comment": str(i)} for i in range(126)]}}
    for definitions in (chain, branches):
        schema = {
            **_root({"a": {"type": "array", "items": {"$ref": "#/$defs/d0"}}}),
            "$defs": definitions,
        }
        record = {"a": [1] * 20_000}
        reads, kept = _reads(schema, record)
        assert reads <= 3  # the record's, the array's, its elements'
        assert kept == record


def test_patterns_the_engine_cannot_join_are_joined_in_parts() -> None:
    """3,000 patterns too long to join in one: each name was tried against each pattern
    on its own (5 s for 5,000 members). Halves are joined until the engine takes them;
    the names they match are those each pattern matches."""
    patterns = [f"^{i:04x}" + "b{999}" for i in range(3000)]
    joined = projection._join(patterns)
    assert 1 < len(joined) < 64
    for name in (f"{7:04x}" + "b" * 999, f"{2999:04x}" + "b" * 999, "x" + "b" * 999):
        assert any(v.is_valid(name) for v in joined) == any(
            projection._matches(p, name) for p in patterns
        )


def test_the_identity_skip_reads_the_roots_patterns() -> None:
    """A root ``patternProperties`` matching a granted field closes it further: the skip
    delivered what projection cuts (helper-158, F5)."""
    street = {"type": "object", "properties": {"street": {"type": "string"}}}
    schema = {**_root({"a": {"type": "object"}}), "patternProperties": {"^a$": street}}
    assert not strict_projection_is_identity(schema, fingerprint="root-patterns", fields=["a"])
    record = {"a": {"street": "Pikk 1", "ssn": "49002124277"}}
    assert project_to_version(record, schema, strict=True) == {"a": {"street": "Pikk 1"}}


# --- helper-166's review of the third version --------------------------------------------


def test_a_tuple_that_says_nothing_of_the_rest_is_read_as_closed() -> None:
    """``prefixItems`` without ``items`` in the granted version: the elements a later
    version adds after the tuple were delivered (and the identity skip said so)."""
    schema = _root({"a": {"type": "array", "prefixItems": [{"type": "string"}]}})
    kept = project_to_version({"a": ["x", {"nin": "49002124277"}]}, schema, strict=True)
    assert kept == {"a": ["x"]}
    assert not strict_projection_is_identity(schema, fingerprint="tuple", fields=None)
    schema["properties"]["a"]["items"] = False  # says no more: cut there, not dropped whole
    kept = project_to_version({"a": ["x", {"nin": "49002124277"}]}, schema, strict=True)
    assert kept == {"a": ["x"]}


def test_a_union_of_closed_objects_keeps_the_members_of_its_branches() -> None:
    """``oneOf`` of two closed objects (the usual tagged union): each branch's
    ``additionalProperties: false`` cut the other's members, so a person lost its name
    and the field its validity. A branch a record need not meet cuts only members no
    part declares."""

    def closed(**properties: Json) -> Json:
        return {"type": "object", "additionalProperties": False, "properties": properties}

    person = closed(kind={"const": "person"}, name={"type": "string"})
    org = closed(kind={"const": "org"}, regno={"type": "string"})
    schema = _root({"a": {"oneOf": [person, org]}})
    record = {"a": {"kind": "person", "name": "Ann", "ssn": "49002124277"}}
    assert project_to_version(record, schema, strict=True) == {
        "a": {"kind": "person", "name": "Ann"}
    }


def test_members_only_then_or_dependent_schemas_declare_are_cut() -> None:
    """What ``then`` or ``dependentSchemas`` declare holds only when their condition
    does, which projection does not judge: read as declared (3c3d166), a member only
    ``then`` named was kept when ``if`` failed (helper-170: a Dutch ID on a German
    record). Such members are cut, as undeclared: fails closed."""
    person = {
        "type": "object",
        "properties": {"country": {"type": "string"}},
        "if": {"properties": {"country": {"const": "NL"}}},
        "then": {"properties": {"bsn": {"type": "string"}}},
    }
    married = {
        "type": "object",
        "properties": {"married": {"type": "boolean"}},
        "dependentSchemas": {"spouse": {"properties": {"spouse": {"type": "string"}}}},
    }
    schema = _root({"a": person, "b": married})
    record = {"a": {"country": "DE", "bsn": "123456782"}, "b": {"married": False, "spouse": "x"}}
    assert project_to_version(record, schema, strict=True) == {
        "a": {"country": "DE"},
        "b": {"married": False},
    }


def test_a_false_branch_a_record_need_not_meet_is_no_part() -> None:
    schema = {
        **_root({"a": {"anyOf": [{"$ref": "#/$defs/no"}, {"type": "object"}]}}),
        "$defs": {"no": False},
    }
    assert project_to_version({"a": {"b": 1}}, schema, strict=True) == {"a": {"b": 1}}


class Counting:
    """A validator that counts how often it is asked for the first error and for all."""

    def __init__(self, validator: Any) -> None:
        self.validator, self.firsts, self.walks = validator, 0, 0

    def is_valid(self, record: Any) -> bool:
        return bool(self.validator.is_valid(record))

    def validate(self, record: Any) -> None:
        self.firsts += 1
        self.validator.validate(record)

    def iter_errors(self, record: Any) -> Any:
        self.walks += 1
        return self.validator.iter_errors(record)


def test_the_fields_a_large_wrong_record_fails_are_found_one_error_at_a_time() -> None:
    """jsonschema-rs builds every error before giving the first: 240,000 wrong elements
    held the event loop for seconds (helper-166). The fields are found with the first
    error each time; all errors are asked for only when the first is at the record."""

    schema = _root(
        {
            "a": {"type": "array", "items": {"type": "integer"}},
            "b": {"type": "string"},
            "c": {"type": "string"},
        }
    )
    validator = Counting(validation.compile_schema(schema))
    record = {"a": ["x"] * 1000, "b": 5, "c": "ok"}
    assert validation.failing_fields(validator, record) == {"a", "b"}  # type: ignore[arg-type]
    assert validator.walks == 0
    assert validation.failing_fields(validator, {"c": "ok"}) == set()  # type: ignore[arg-type]


def test_a_record_too_costly_to_cut_down_is_refused_not_cut_for_seconds() -> None:
    """126 ``allOf`` branches that each match every member name, and 90,000 members:
    11 s with the event loop held (helper-166). Past a budget of reads the projection
    stops (the exchange answers 502); a map through the same 126 branches' values is
    read once for all its members and stays within it."""
    closing = [
        {"patternProperties": {"": {"type": "integer"}}, "additionalProperties": False}
        for _ in range(126)
    ]
    schema = _root({"a": {"type": "object", "allOf": closing}})
    members = {f"k{i}": i for i in range(projection.WORK_BUDGET // 126 + 1)}
    with pytest.raises(projection.TooCostly):
        project_to_version({"a": members}, schema, strict=True)
    maps = [{"additionalProperties": {"type": "integer"}} for _ in range(126)]
    schema = _root({"a": {"type": "object", "allOf": maps}})
    assert project_to_version({"a": members}, schema, strict=True) == {"a": members}


def test_pattern_tries_count_against_the_budget() -> None:
    """Thousands of distinct patterns, one matching every name: each name tried them
    one by one, uncounted (33 s for 60,000 members, helper-170)."""
    patterns = {f"^x{i}": {"type": "integer"} for i in range(199)} | {"^": {"type": "integer"}}
    schema = _root({"a": {"type": "object", "patternProperties": patterns}})
    members = {f"k{i}": i for i in range(projection.WORK_BUDGET // 200 + 1)}
    with pytest.raises(projection.TooCostly):
        project_to_version({"a": members}, schema, strict=True)


def test_the_first_error_rounds_are_bounded() -> None:
    """Each round of first errors validates the whole rest: 2,700 failing fields beside
    a large valid one took 4.3 s (helper-170). After a few rounds, every error is asked
    for at once; the fields found are the same."""
    schema = _root({f"f{i}": {"enum": [0]} for i in range(40)})
    validator = Counting(validation.compile_schema(schema))
    record = {f"f{i}": 1 for i in range(40)}
    assert validation.failing_fields(validator, record) == set(record)  # type: ignore[arg-type]
    assert validator.firsts <= 16
