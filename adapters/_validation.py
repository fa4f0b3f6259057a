"""JSON Schema (Draft 2020-12) checks shared by the record store and the provider."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from referencing import Registry
from referencing.exceptions import Unresolvable

from ._errors import UpstreamError

__all__ = ["compile_validator", "violation"]

# Scalar schema values are safe to quote in a message: they come from the schema,
# never from the record.
_QUOTABLE = (str, int, float, bool, type(None))


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
