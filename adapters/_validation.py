"""JSON Schema (Draft 2020-12) checks shared by the record store and the provider.

Python's ``jsonschema`` is the reference: it checks schemas against the metaschema and
describes what a record breaks. The provider decides each record it serves with
jsonschema-rs (`RecordValidator`), the validator the hub checks the same record with
(about 1 µs a record instead of about 45, docs/performance.md "Record validation").
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import jsonschema_rs
import rfc8785
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from referencing import Registry
from referencing.exceptions import Unresolvable

from ._errors import UpstreamError

__all__ = [
    "MAX_SERVED_ANSWER_BYTES",
    "RecordValidator",
    "answer_size_problem",
    "canonical_problem",
    "compile_validator",
    "violation",
]

# Scalar schema values are safe to quote in a message: they come from the schema,
# never from the record.
_QUOTABLE = (str, int, float, bool, type(None))
# Deeper records are refused before any validator walks them: the hub refuses answers
# nested deeper than 64 (its MAX_ANSWER_DEPTH, the record wrapped once), and a
# recursive schema's validator recurses as deep as the record (jsonschema-rs ends the
# process past some 20,000 levels; Python's raises RecursionError).
MAX_RECORD_DEPTH = 63
# The longest answer to a record query the hub takes from an adapter: the hub's
# onceonly.hub.exchange.owner.MAX_ANSWER_BYTES (which the adapter cannot import;
# tests/adapters/test_adapters_store_answer_size.py checks they agree). Longer answers
# the hub refuses, every time.
MAX_SERVED_ANSWER_BYTES = 1024 * 1024
# The widest version the served answer can name (the hub numbers versions from 1)
_WIDEST_VERSION = 2**53 - 1
_SERVED_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def compile_validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for ``schema`` that checks formats and never fetches a remote $ref.

    :raises UpstreamError: the schema itself is invalid (problem ``invalid-schema``).
    """
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        raise UpstreamError(
            f"the item's schema is invalid at {_pointer(error.absolute_path)}",
            problem_type="invalid-schema",
        ) from error
    return Draft202012Validator(
        schema,
        registry=Registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


class RecordValidator:
    """An item schema compiled for serving: jsonschema-rs decides whether a record is
    valid, with the options of the hub's validator (formats checked, offline, patterns
    matched in linear time); the reference describes a violation. A schema that
    jsonschema-rs cannot compile is decided by the reference alone.

    :raises UpstreamError: the schema itself is invalid (problem ``invalid-schema``).
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        self.reference = compile_validator(schema)
        try:
            self._fast: jsonschema_rs.Draft202012Validator | None = (
                jsonschema_rs.Draft202012Validator(
                    schema,
                    validate_formats=True,
                    ignore_unknown_formats=False,
                    pattern_options=jsonschema_rs.RegexOptions(),
                    offline=True,
                )
            )
        except (jsonschema_rs.ValidationError, ValueError):
            self._fast = None

    def violation(self, record: object) -> str | None:
        """As `violation`, decided by jsonschema-rs when it could compile the schema."""
        if _deeper_than(record, MAX_RECORD_DEPTH):
            return f"(record): nested deeper than {MAX_RECORD_DEPTH} levels"
        if self._fast is None:
            return violation(self.reference, record)
        try:
            valid = self._fast.is_valid(record)
        except ValueError:  # a value with no JSON form (jsonschema-rs cannot read it)
            return "(record): has a value that is not JSON"
        if valid:
            return None
        return violation(self.reference, record) or self._described(record)

    def _described(self, record: object) -> str:
        """What jsonschema-rs refused that the reference did not (a format it skips)."""
        error = next(iter(self._fast.iter_errors(record))) if self._fast else None
        if error is None:
            return "(record): fails the schema"
        return f"{_pointer(error.instance_path)}: fails '{error.kind.name}'"


def _deeper_than(value: object, limit: int) -> bool:
    """Whether ``value`` has containers nested more than ``limit`` deep (no recursion)."""
    pending: list[tuple[object, int]] = [(value, 0)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict):
            children: Iterable[object] = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        if depth >= limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def canonical_problem(record: Any) -> str | None:
    """Why ``record`` has no RFC 8785 canonical JSON, or ``None``: the provider commits
    to that form of every record it serves, and refuses one without it
    (``source-invalid-record``): an integer beyond ±(2^53 - 1) (I-JSON, RFC 7493 §2.2),
    NaN or an infinity, a string that is not Unicode text (a lone surrogate).
    Quotes no value."""
    try:
        rfc8785.dumps(record)
    except (ValueError, TypeError):  # rfc8785's CanonicalizationError is a ValueError
        return (
            "(record): has a value with no canonical JSON form (RFC 8785: an integer"
            " beyond 2^53, NaN, Infinity, or text that is not Unicode)"
        )
    return None


def answer_size_problem(item: str, record: dict[str, Any]) -> str | None:
    """Why the hub would refuse the answer serving ``record`` of ``item`` as too large
    (longer than `MAX_SERVED_ANSWER_BYTES`, in the bytes the provider sends it, with
    the widest version), or ``None``. ``record`` must have a canonical form
    (`canonical_problem`). Quotes no value."""
    answer = {"item": item, "version": _WIDEST_VERSION, "record": record}
    size = len(_SERVED_JSON.encode(answer).encode("utf-8"))
    if size <= MAX_SERVED_ANSWER_BYTES:
        return None
    return (
        f"(record): its answer would be {size} bytes; the hub refuses answers over"
        f" {MAX_SERVED_ANSWER_BYTES}"
    )


def violation(validator: Draft202012Validator, instance: object) -> str | None:
    """Describe the most relevant schema violation, or ``None`` when valid.

    The description names the JSON pointer and the failed keyword; it quotes no
    value from ``instance``, so it is safe to log and to send.
    """
    try:
        error = best_match(validator.iter_errors(instance))
    except Unresolvable as unresolvable:
        return f"the schema has an unresolvable reference {unresolvable.ref!r}"
    return None if error is None else _describe(error)


def _describe(error: ValidationError) -> str:
    where = _pointer(error.absolute_path)
    keyword, expected = str(error.validator), error.validator_value
    if keyword == "required" and isinstance(expected, list) and isinstance(error.instance, dict):
        missing = ", ".join(repr(name) for name in expected if name not in error.instance)
        return f"{where}: missing required property {missing}"
    shown = f" {expected!r}" if isinstance(expected, _QUOTABLE) else ""
    return f"{where}: fails '{keyword}'{shown}"


def _pointer(path: Iterable[str | int]) -> str:
    """RFC 6901 JSON pointer; the empty pointer (the whole record) is shown as ``(record)``."""
    parts = [str(part).replace("~", "~0").replace("/", "~1") for part in path]
    return "/" + "/".join(parts) if parts else "(record)"
