"""What the registry refuses in a schema (pure checks), which regular expressions it
judges unsafe, and how a record is projected onto an earlier version."""

import re
import time
from typing import Any

import pytest

from onceonly.hub.registry.exceptions import InvalidSchema
from onceonly.hub.registry.projection import project_to_version
from onceonly.hub.registry.regex_safety import UnsafePattern, check_pattern
from onceonly.hub.registry.schema_rules import check_schema, personal_fields
from onceonly.hub.registry.validation import compile_schema

Json = Any
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def schema(**members: Json) -> Json:
    return {"$schema": DRAFT, "type": "object", **members}


def refusal(document: Json) -> str:
    with pytest.raises(InvalidSchema) as refused:
        check_schema(document)
    return refused.value.detail


REFUSED: dict[str, tuple[Json, str]] = {
    "ref-to-itself": (schema(**{"$defs": {"a": {"$ref": "#/$defs/a"}}}), "/$defs/a/$ref"),
    "ref-loop-through-allOf": (
        schema(**{"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}}}),
        "/$defs/b/allOf/0/$ref",
    ),
    "root-ref-to-root": (schema(**{"$ref": "#"}), "/$ref"),
    "ref-to-nothing": (
        schema(properties={"x": {"$ref": "#/$defs/missing"}}),
        "/properties/x/$ref",
    ),
    "ref-into-enum-data": (
        schema(enum=[{"$ref": "https://evil.example"}], properties={"x": {"$ref": "#/enum/0"}}),
        "/properties/x/$ref",
    ),
    "unknown-keyword": (schema(properties={"x": {"requird": ["a"]}}), "/properties/x/requird"),
    "unevaluated": (schema(unevaluatedProperties=False), "/unevaluatedProperties"),
    "dynamic-ref": (schema(properties={"x": {"$dynamicRef": "#a"}}), "/properties/x"),
    "nested-$schema": (schema(properties={"x": {"$schema": DRAFT}}), "/properties/x/$schema"),
    "unchecked-format": (schema(properties={"x": {"format": "regex"}}), "/properties/x/format"),
    "redos-pattern": (
        schema(properties={"x": {"type": "string", "pattern": "^(a+)+$"}}),
        "/properties/x/pattern",
    ),
    "redos-pattern-property": (
        schema(patternProperties={"^(a|a)*$": {}}),
        "/patternProperties/^(a|a)*$",
    ),
    "pattern-that-does-not-compile": (
        schema(properties={"x": {"pattern": "(unclosed"}}),
        "/properties/x/pattern",
    ),
    "pattern-in-a-ref-target": (
        schema(**{"$defs": {"p": {"pattern": "(a*)*b"}}}),
        "/$defs/p/pattern",
    ),
}


@pytest.mark.parametrize(("document", "pointer"), REFUSED.values(), ids=REFUSED.keys())
def test_refusals_name_the_json_pointer(document: Json, pointer: str) -> None:
    assert refusal(document).startswith(pointer + ":")


def test_nesting_is_limited() -> None:
    deep: Json = {}
    for _ in range(40):
        deep = {"items": deep}
    detail = refusal(schema(properties={"x": deep}))
    assert detail.startswith("/properties/x/items/items/")
    assert detail.endswith("nested deeper than 32 levels")


def test_keywords_inside_data_are_not_read_as_schemas() -> None:
    check_schema(
        schema(
            properties={"x": {"enum": [{"$id": "x", "pattern": "(a+)+"}], "default": {"$ref": 1}}}
        )
    )


def test_recursive_structures_and_refs_with_escapes_are_accepted() -> None:
    check_schema(
        schema(
            **{
                "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#"}}}},
                "properties": {
                    "a/b~c": {"type": "array", "items": {"type": "string"}},
                    "first": {"$ref": "#/$defs/node"},
                    "tags": {"$ref": "#/properties/a~1b~0c/items"},
                },
            }
        )
    )


def test_a_long_ref_chain_is_checked_without_recursion() -> None:
    chain = {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(1500)}
    chain["d1500"] = {"$ref": "#/$defs/d0"}
    started = time.perf_counter()
    assert "loops through $ref" in refusal(schema(**{"$defs": chain}))
    assert time.perf_counter() - started < 2.0


def test_a_large_enum_within_the_size_limit_is_checked_quickly() -> None:
    started = time.perf_counter()
    check_schema(schema(properties={"x": {"enum": list(range(9_000))}}))
    assert time.perf_counter() - started < 2.0
    assert refusal(schema(properties={"x": {"enum": list(range(20_000))}})).startswith(
        "/: the schema is larger"
    )


# --- regular expressions --------------------------------------------------------------------

SAFE_PATTERNS = [
    "^[0-9]{11}$",
    "^[A-Z]{2}[0-9]{6}$",
    "^[0-9]{2}(\\.[0-9][0-9])?$",
    "^([0-9]{8}|[0-9]{11})$",
    "^(cat|dog)*$",
    "^[a-z]+\\.[a-z]+$",
    "^[^@]+@[^@]+$",
    "^P(?!$)([0-9]+Y)?([0-9]+M)?$",
    "^(?:[a-z]+)?[0-9]+$",  # an optional quantifier's characters, then others
    "^([a-z]+-)?[a-z]+$",  # a separator inside the optional group closes it
    "^[\\]a]$",  # a ] escaped first in a class
    "^[a\\[]+$",
]
UNSAFE_PATTERNS = {
    "^(a+)+$": "contains another quantifier",
    "(a|a)*": "can match nothing",
    "(a|ab)*c": "can match nothing",
    "^(ab|[a-c]c)+$": "begin with the same character",
    "^(a|b?)+$": "contains another quantifier",
    "^([0-9]{2})*$": "contains another quantifier",
    "\\d+\\d+x": "two unbounded quantifiers",
    "^.*a.*$": "two unbounded quantifiers",
    # helper-147: a large quantifier inside ?, {0,1} or {1} was not seen by the next
    "^(?:a+)?a+$": "two unbounded quantifiers",
    "^(a+)?(a+)?(a+)?$": "two unbounded quantifiers",
    "^(?:[0-9]+){1}[0-9]+$": "two unbounded quantifiers",
    "^(?:x|[0-9]+){0,1}[0-9]+$": "two unbounded quantifiers",
    # helper-158: ECMA-262 reads [] as an empty class and [^] as any character
    "^[]a]$": "read differently by ECMA-262",
    "^[^]a]$": "read differently by ECMA-262",
    "(?P<n>a)": "named groups",
    "(?i)a": "inline flags",
    "(?#note)a": "comments",
    "(?>a)": "atomic groups",
    "a*+": "possessive",
    "\\Aa\\Z": "ECMA-262",
    "(a)\\1": "backreferences",
    "a{5000}": "counted repetition",
    "(": "does not compile",
    "a" * 1001: "longer than",
}


@pytest.mark.parametrize("pattern", SAFE_PATTERNS)
def test_safe_patterns_are_accepted(pattern: str) -> None:
    check_pattern(pattern)


@pytest.mark.parametrize(("pattern", "reason"), UNSAFE_PATTERNS.items(), ids=range(24))
def test_unsafe_patterns_are_refused_with_the_reason(pattern: str, reason: str) -> None:
    with pytest.raises(UnsafePattern, match=re.escape(reason)):
        check_pattern(pattern)


def test_the_hub_validator_never_backtracks_even_on_a_hostile_record() -> None:
    """Linear-time matching: a pattern that is exponential for Python's re costs nothing."""
    validator = compile_schema({"type": "string", "pattern": "^(a+)+$"})
    started = time.perf_counter()
    assert not validator.is_valid("a" * 5000 + "!")
    assert time.perf_counter() - started < 2  # backtracking: far longer than a test runs


# --- projection onto an earlier version ---------------------------------------------------

V1 = schema(
    **{
        "$defs": {
            "address": {
                "type": "object",
                "properties": {"street": {"type": "string"}},
                "additionalProperties": False,
            }
        },
        "properties": {
            "name": {"type": "string"},
            "home": {"$ref": "#/$defs/address"},
            "history": {"type": "array", "items": {"$ref": "#/$defs/address"}},
            "open": {"type": "object", "properties": {"a": {"type": "string"}}},
        },
        "additionalProperties": False,
    }
)


def test_projection_drops_what_the_version_does_not_define() -> None:
    record = {
        "name": "Mari",
        "nickname": "M",
        "home": {"street": "Pikk 1", "apartment": "4"},
        "history": [{"street": "Lai 2", "apartment": "1"}, {"street": "Vana 3"}],
        "open": {"a": "x", "b": "kept: the subschema allows it"},
    }
    assert project_to_version(record, V1) == {
        "name": "Mari",
        "home": {"street": "Pikk 1"},
        "history": [{"street": "Lai 2"}, {"street": "Vana 3"}],
        "open": {"a": "x", "b": "kept: the subschema allows it"},
    }
    assert compile_schema(V1).is_valid(project_to_version(record, V1))


def test_projection_never_invents_values() -> None:
    assert project_to_version({"nickname": "M"}, V1) == {}
    assert project_to_version({"name": None, "home": "not an object"}, V1) == {
        "name": None,
        "home": "not an object",
    }


def test_projection_keeps_pattern_properties_of_a_closed_object() -> None:
    version = schema(
        properties={
            "codes": {
                "type": "object",
                "patternProperties": {"^x-": {"type": "string"}},
                "additionalProperties": False,
            }
        }
    )
    projected = project_to_version({"codes": {"x-a": "1", "y": "2"}}, version)
    assert projected == {"codes": {"x-a": "1"}}


PERSONAL = {"type": "string", "x-personal": True}


def test_a_field_with_a_personal_part_inside_is_personal_as_a_whole() -> None:
    document = schema(
        properties={
            "marked": PERSONAL,
            "nested": {"type": "object", "properties": {"name": PERSONAL}},
            "listed": {"type": "array", "items": {"anyOf": [{"type": "null"}, PERSONAL]}},
            "referenced": {"$ref": "#/$defs/holder"},
            "recursive": {"$ref": "#/$defs/node"},
            "plain": {"type": "object", "properties": {"code": {"type": "string"}}},
            "unmarked-ref": {"$ref": "#/$defs/code"},
            "false-mark": {"type": "string", "x-personal": False},
        },
        **{
            "$defs": {
                "holder": {"type": "object", "properties": {"id": {"$ref": "#/$defs/id"}}},
                "id": PERSONAL,
                "code": {"type": "string"},
                "node": {
                    "type": "object",
                    "properties": {"next": {"$ref": "#/$defs/node"}, "who": PERSONAL},
                },
            }
        },
    )
    check_schema(document)
    assert personal_fields(document) == ["listed", "marked", "nested", "recursive", "referenced"]


def test_strict_projection_keeps_only_what_the_granted_version_declares() -> None:
    """Cutting a record down to the version a grant was decided on: objects that list
    their members (themselves or through allOf/anyOf/oneOf and $ref) are read as closed;
    maps keep their members; the lenient projection keeps what an open object allows."""
    name = {"type": "string"}
    granted = schema(
        properties={
            "open": {"type": "object", "properties": {"town": name}},
            "composed": {"allOf": [{"$ref": "#/$defs/place"}, {"properties": {"zip": name}}]},
            "either": {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"a": name}}]},
            "listed": {"allOf": [{"type": "array"}, {"items": {"$ref": "#/$defs/place"}}]},
            "map": {"type": "object", "additionalProperties": {"type": "integer"}},
            "free": {"type": "object"},
        },
        **{"$defs": {"place": {"type": "object", "properties": {"town": name}}}},
    )
    check_schema(granted)
    record = {
        "open": {"town": "Tartu", "occupant": "49002124277"},
        "composed": {"town": "Tartu", "zip": "50090", "occupant": "4900"},
        "either": {"a": "x", "b": "added later"},
        "listed": [{"town": "Tartu", "occupant": "4900"}],
        "map": {"math": 5, "art": 4},
        "free": {"anything": 1},
    }
    assert project_to_version(record, granted, strict=True) == {
        "open": {"town": "Tartu"},
        "composed": {"town": "Tartu", "zip": "50090"},
        "either": {"a": "x"},
        "listed": [{"town": "Tartu"}],
        "map": {"math": 5, "art": 4},
        "free": {"anything": 1},
    }
    assert project_to_version(record, granted) == record  # open objects allow the rest


def _with_marks_at(where: str) -> Json:
    marked = {"type": "string", "x-personal": True}
    schema: Json = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"name": {"type": "string"}},
    }
    if where == "allOf":
        schema["allOf"] = [{"properties": {"name": marked}}]
    elif where == "unused $defs":
        schema["$defs"] = {"n": marked}
    elif where == "patternProperties":
        schema["patternProperties"] = {"^n": marked}
    elif where == "root $ref":
        schema["$defs"] = {"more": {"properties": {"name": marked}}}
        schema["$ref"] = "#/$defs/more"
    return schema


@pytest.mark.parametrize("where", ["allOf", "unused $defs", "patternProperties", "root $ref"])
def test_a_personal_mark_no_field_reaches_is_refused(where: str) -> None:
    """personal_fields reads marks on and inside root properties only: one elsewhere
    marked nothing, and the item read as holding no personal data, so one steward
    could open it alone (a hostile review of decision 0059)."""
    with pytest.raises(InvalidSchema) as refused:
        check_schema(_with_marks_at(where))
    assert "x-personal" in refused.value.detail
    assert "marks no field" in refused.value.detail


def test_a_mark_reached_from_a_field_through_a_ref_is_read() -> None:
    schema: Json = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"name": {"$ref": "#/$defs/n"}, "age": {"type": "integer"}},
        "$defs": {"n": {"type": "string", "x-personal": True}},
    }
    check_schema(schema)
    assert personal_fields(schema) == ["name"]
