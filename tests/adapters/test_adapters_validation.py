"""The provider's record check: jsonschema-rs decides, the reference describes."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from onceonly.adapters._validation import (
    MAX_RECORD_DEPTH,
    RecordValidator,
    compile_validator,
    violation,
)

from tests.adapters.adapter_testing import RECORD, SCHEMA

LINKED: dict[str, Any] = {
    "type": "object",
    "properties": {"at": {"type": "string", "format": "uri"}},
}


@pytest.mark.parametrize(
    "record",
    [
        RECORD,
        {"street": "Pikk 1", "city": "Tallinn", "postal_code": "1"},
        {"street": "Pikk 1"},
        {"street": "Pikk 1", "city": "Tallinn", "moved_in": "2024-02-30"},
        {"street": "Pikk 1", "city": "Tallinn", "floor": True},
        {"street": "Pikk 1", "city": "Tallinn", "geo": {"lat": 1, "alt": 2}},
        [],
    ],
)
def test_describes_a_record_as_the_reference_does(record: Any) -> None:
    assert RecordValidator(SCHEMA).violation(record) == violation(compile_validator(SCHEMA), record)


def test_refuses_a_format_the_reference_skips() -> None:
    """Python's jsonschema does not check uri without an optional package; the hub's
    validator does, and so does the provider now."""
    record = {"at": "no scheme"}
    assert violation(compile_validator(LINKED), record) is None

    assert RecordValidator(LINKED).violation(record) == "/at: fails 'format'"
    assert RecordValidator(LINKED).violation({"at": "https://register.example/1"}) is None


def test_refuses_a_value_with_no_json_form() -> None:
    record = {"street": "Pikk 1", "city": "Tallinn", "moved_in": date(2020, 1, 1)}

    assert RecordValidator(SCHEMA).violation(record) is not None


def test_leaves_a_schema_jsonschema_rs_cannot_compile_to_the_reference() -> None:
    """A look-ahead is no pattern of the linear-time engine; the reference still decides."""
    schema = {"type": "string", "pattern": "^(?!x)"}
    checker = RecordValidator(schema)

    assert checker.violation("abc") is None
    assert checker.violation("xyz") == "(record): fails 'pattern' '^(?!x)'"


def test_a_record_nested_deeper_than_the_hub_reads_is_refused_before_validation() -> None:
    """A recursive schema's validator recurses as deep as the record: past some 20,000
    levels jsonschema-rs ends the process. The depth is checked first, without
    recursion (the hub refuses answers nested deeper than 64 anyway)."""
    schema = {"type": "object", "properties": {"a": {"$ref": "#"}}}
    deep: dict[str, Any] = {}
    for _ in range(30_000):
        deep = {"a": deep}
    shallow: dict[str, Any] = {}  # MAX_RECORD_DEPTH objects, one in another: as deep as allowed
    for _ in range(MAX_RECORD_DEPTH - 1):
        shallow = {"a": shallow}

    validator = RecordValidator(schema)
    assert validator.violation(deep) == f"(record): nested deeper than {MAX_RECORD_DEPTH} levels"
    assert validator.violation(shallow) is None
    assert validator.violation({"a": shallow}) is not None
