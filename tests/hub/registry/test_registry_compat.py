"""The compatibility checker, construct by construct and mode by mode (hand-written cases)."""

import time
from typing import Any

import pytest

from onceonly.hub.registry.compat import (
    CannotJudge,
    Incompatible,
    check_compatible,
    subsumption_problem,
)

Json = Any
STRING = {"type": "string"}


def obj(properties: Json, required: list[str] | None = None, additional: Json = None) -> Json:
    schema = {"type": "object", "properties": properties, "required": required or []}
    if additional is not None:
        schema["additionalProperties"] = additional
    return schema


# (a, b, a ⊆ b?): "every instance valid under a is valid under b"
SUBSUMPTION: dict[str, tuple[Json, Json, bool]] = {
    "true-contains-anything": ({"type": "integer"}, True, True),
    "false-is-contained-everywhere": (False, {"type": "integer"}, True),
    "anything-is-not-in-a-type": (True, {"type": "integer"}, False),
    "annotations-are-ignored": (
        {"type": "string", "title": "A", "x-personal": True},
        {"type": "string", "description": "B", "$comment": "c"},
        True,
    ),
    "integer-in-number": ({"type": "integer"}, {"type": "number"}, True),
    "number-not-in-integer": ({"type": "number"}, {"type": "integer"}, False),
    "type-array-widened": ({"type": "string"}, {"type": ["string", "null"]}, True),
    "type-array-narrowed": ({"type": ["string", "null"]}, {"type": "string"}, False),
    "no-type-is-every-type": ({"minimum": 1}, {"type": "number", "minimum": 1}, False),
    "enum-widened": ({"enum": ["a", "b"]}, {"enum": ["a", "b", "c"]}, True),
    "enum-narrowed": ({"enum": ["a", "b"]}, {"enum": ["a"]}, False),
    "enum-in-type-and-bounds": ({"enum": [1, 2]}, {"type": "integer", "maximum": 2}, True),
    "enum-value-out-of-bounds": ({"enum": [1, 3]}, {"type": "integer", "maximum": 2}, False),
    "enum-1-equals-1.0": ({"enum": [1]}, {"enum": [1.0]}, True),
    "enum-true-is-not-1": ({"enum": [True]}, {"enum": [1]}, False),
    "enum-values-a-refuses-do-not-count": ({"type": "string", "enum": ["a", 1]}, STRING, True),
    "const-in-enum": ({"const": "a"}, {"enum": ["a", "b"]}, True),
    "enum-added-to-string": (STRING, {"type": "string", "enum": ["a"]}, False),
    "boolean-in-enum-of-both": ({"type": "boolean"}, {"enum": [True, False]}, True),
    "minimum-lowered": ({"type": "number", "minimum": 2}, {"type": "number", "minimum": 1}, True),
    "minimum-raised": ({"type": "number", "minimum": 1}, {"type": "number", "minimum": 2}, False),
    "minimum-added": ({"type": "number"}, {"type": "number", "minimum": 0}, False),
    "inclusive-to-exclusive": (
        {"type": "number", "minimum": 0},
        {"type": "number", "exclusiveMinimum": 0},
        False,
    ),
    "exclusive-to-inclusive": (
        {"type": "number", "exclusiveMaximum": 5},
        {"type": "number", "maximum": 5},
        True,
    ),
    "maximum-lowered": (
        {"type": "integer", "maximum": 9},
        {"type": "integer", "maximum": 8},
        False,
    ),
    "bounds-ignore-strings": ({"type": "string"}, {"type": "string", "minimum": 3}, True),
    "maxLength-raised": (
        {"type": "string", "maxLength": 5},
        {"type": "string", "maxLength": 9},
        True,
    ),
    "maxLength-lowered": (
        {"type": "string", "maxLength": 5},
        {"type": "string", "maxLength": 4},
        False,
    ),
    "minLength-raised": (STRING, {"type": "string", "minLength": 1}, False),
    "minItems-lowered": ({"type": "array", "minItems": 2}, {"type": "array", "minItems": 1}, True),
    "maxItems-added": ({"type": "array"}, {"type": "array", "maxItems": 3}, False),
    "pattern-removed": ({"type": "string", "pattern": "^a$"}, STRING, True),
    "pattern-kept": (
        {"type": "string", "pattern": "^a$"},
        {"type": "string", "pattern": "^a$"},
        True,
    ),
    "pattern-changed": (
        {"type": "string", "pattern": "^a$"},
        {"type": "string", "pattern": "^a+$"},
        False,
    ),
    "pattern-added": (STRING, {"type": "string", "pattern": "^a$"}, False),
    "format-removed": ({"type": "string", "format": "date"}, STRING, True),
    "format-added": (STRING, {"type": "string", "format": "date"}, False),
    "items-widened": (
        {"type": "array", "items": {"type": "integer"}},
        {"type": "array", "items": {"type": "number"}},
        True,
    ),
    "items-narrowed": (
        {"type": "array", "items": {"type": "number"}},
        {"type": "array", "items": {"type": "integer"}},
        False,
    ),
    "items-added": ({"type": "array"}, {"type": "array", "items": STRING}, False),
    "optional-field-added-to-closed-object": (
        obj({"a": STRING}, ["a"], False),
        obj({"a": STRING, "b": STRING}, ["a"], False),
        True,
    ),
    "optional-field-added-to-open-object": (
        obj({"a": STRING}, ["a"]),
        obj({"a": STRING, "b": STRING}, ["a"]),
        False,
    ),
    "required-field-added": (
        obj({"a": STRING}, [], False),
        obj({"a": STRING, "b": STRING}, ["b"], False),
        False,
    ),
    "field-made-optional": (obj({"a": STRING}, ["a"], False), obj({"a": STRING}, [], False), True),
    "field-made-required": (obj({"a": STRING}, [], False), obj({"a": STRING}, ["a"], False), False),
    "field-removed-from-open-object": (obj({"a": STRING, "b": STRING}), obj({"a": STRING}), True),
    "field-removed-from-closed-object": (
        obj({"a": STRING, "b": STRING}, [], False),
        obj({"a": STRING}, [], False),
        False,
    ),
    "object-opened": (obj({"a": STRING}, [], False), obj({"a": STRING}), True),
    "object-closed": (obj({"a": STRING}), obj({"a": STRING}, [], False), False),
    "additional-schema-widened": (
        obj({}, [], {"type": "integer"}),
        obj({}, [], {"type": "number"}),
        True,
    ),
    "additional-schema-to-named-field": (
        obj({}, [], {"type": "integer"}),
        obj({"a": {"type": "number"}}, [], {"type": "integer"}),
        True,
    ),
    "nested-field-narrowed": (
        obj({"address": obj({"street": {"type": ["string", "null"]}}, [], False)}),
        obj({"address": obj({"street": STRING}, [], False)}),
        False,
    ),
}


@pytest.mark.parametrize(("a", "b", "contained"), SUBSUMPTION.values(), ids=SUBSUMPTION.keys())
def test_subsumption(a: Json, b: Json, contained: bool) -> None:
    problem = subsumption_problem(a, b)
    assert (problem is None) == contained, problem


def test_a_reason_names_the_json_pointer_and_both_schemas() -> None:
    problem = subsumption_problem(
        obj({"address": obj({"street": {"type": ["string", "null"]}})}),
        obj({"address": obj({"street": STRING})}),
        names=("version 1", "the new version"),
    )
    assert problem == (
        "/properties/address/properties/street: version 1 allows type 'null',"
        " the new version does not"
    )


DEFS = {
    "$defs": {
        "code": {"type": "string", "maxLength": 5},
        "wide": {"type": "string", "maxLength": 9},
    }
}


def test_local_refs_are_resolved_in_each_document() -> None:
    a = {**DEFS, **obj({"c": {"$ref": "#/$defs/code"}})}
    b = {**DEFS, **obj({"c": {"$ref": "#/$defs/wide"}})}
    assert subsumption_problem(a, b) is None
    assert subsumption_problem(b, a) == (
        "/properties/c: the second schema has a lower maxLength than the first schema"
    )


def test_recursive_structures_are_judged() -> None:
    def tree(leaf: Json) -> Json:
        node = obj({"value": leaf, "children": {"type": "array", "items": {"$ref": "#/$defs/n"}}})
        return {"$defs": {"n": node}, "$ref": "#/$defs/n"}

    assert subsumption_problem(tree({"type": "integer"}), tree({"type": "number"})) is None
    problem = subsumption_problem(tree({"type": "number"}), tree({"type": "integer"}))
    assert problem is not None
    assert problem.startswith("/properties/value:")


def test_a_ref_loop_cannot_be_judged() -> None:
    looping = {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}
    with pytest.raises(CannotJudge, match="'\\$ref loop' at /\\$defs/a"):
        subsumption_problem(looping, {"type": "integer"})


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("anyOf", [STRING]),
        ("allOf", [STRING]),
        ("oneOf", [STRING]),
        ("not", STRING),
        ("if", STRING),
        ("patternProperties", {"^a": STRING}),
        ("dependentSchemas", {"a": STRING}),
        ("unevaluatedProperties", False),
        ("contains", STRING),
        ("prefixItems", [STRING]),
        ("uniqueItems", True),
        ("multipleOf", 2),
    ],
)
def test_constructs_outside_the_subset_are_refused_with_their_pointer(
    keyword: str, value: Json
) -> None:
    old = obj({"x": STRING})
    new = obj({"x": {keyword: value}})
    with pytest.raises(CannotJudge) as refused:
        subsumption_problem(old, new)
    assert str(refused.value) == f"cannot judge compatibility of {keyword!r} at /properties/x"


def test_an_unchanged_part_is_no_change_to_judge() -> None:
    unjudged = {"anyOf": [STRING, {"type": "integer"}]}
    old = obj({"x": unjudged}, [], False)
    new = obj({"x": unjudged, "y": STRING}, [], False)
    assert subsumption_problem(old, new) is None


V1 = obj({"a": STRING}, ["a"], False)
V2 = obj({"a": STRING, "b": STRING}, ["a"], False)  # adds an optional field: BACKWARD only
V3 = obj({"a": STRING}, ["a"], False)  # drops it again: FORWARD with V2, FULL with V1

MODES: list[tuple[str, list[Json], Json, bool]] = [
    ("NONE", [V1], {"type": "object", "required": ["zzz"]}, True),
    ("BACKWARD", [V1], V2, True),
    ("BACKWARD", [V2], V1, False),
    ("FORWARD", [V1], V2, False),
    ("FORWARD", [V2], V3, True),
    ("FULL", [V1], V2, False),
    ("FULL", [V1], V3, True),
    # transitive modes compare with every earlier version, the others with the last
    ("BACKWARD", [V2, V3], obj({"a": STRING}, ["a"], False), True),
    ("FORWARD", [V1, V2], V3, True),
    ("FORWARD_TRANSITIVE", [V1, V2], V3, True),
    ("BACKWARD", [V1, V2], V3, False),
    ("BACKWARD_TRANSITIVE", [V1, V3], V2, True),
    ("BACKWARD_TRANSITIVE", [V2, V3], V3, False),
    ("FULL_TRANSITIVE", [V1, V3], V3, True),
    ("FULL_TRANSITIVE", [V1, V2], V3, False),
]


@pytest.mark.parametrize(("mode", "earlier", "new", "accepted"), MODES)
def test_modes(mode: Any, earlier: list[Json], new: Json, accepted: bool) -> None:
    if accepted:
        check_compatible(new, earlier, mode)
    else:
        with pytest.raises(Incompatible):
            check_compatible(new, earlier, mode)


def test_transitive_refusal_names_the_version_it_breaks() -> None:
    narrowed = obj({"a": {"type": "string", "maxLength": 3}}, ["a"], False)
    widened = obj({"a": STRING}, ["a"], False)
    with pytest.raises(Incompatible) as refused:
        check_compatible(narrowed, [widened, narrowed], "BACKWARD_TRANSITIVE")
    assert str(refused.value) == (
        "not BACKWARD-compatible with version 1: /properties/a: the new version has a lower"
        " maxLength than version 1 (data valid under version 1 could be invalid under the"
        " new version)"
    )


def test_a_large_enum_is_judged_quickly() -> None:
    values = list(range(30_000))
    started = time.perf_counter()
    assert subsumption_problem({"enum": values}, {"enum": [*values, -1]}) is None
    assert subsumption_problem({"enum": [*values, -1]}, {"enum": values}) is not None
    assert time.perf_counter() - started < 2.0
