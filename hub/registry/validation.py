"""Record validation against item schemas: compiled once, cached by fingerprint.

The hub validates with jsonschema-rs (a Rust implementation): it passes the
official JSON-Schema-Test-Suite cases for every keyword and format the registry
allows (tests/hub/registry/test_registry_validator_suite.py), including the format cases
that Python's jsonschema skips without optional packages, and costs about 1 µs
per record instead of about 45 (docs/performance.md). ``jsonschema`` stays the
reference: the registry checks uploads against the metaschema with it.

Validators are built offline (no ``$ref`` is ever retrieved) with the linear-time
``regex`` engine, so no record can make a pattern backtrack, whatever the schema.
"""

import hashlib
from typing import Any

import jsonschema_rs

from onceonly.hub.kit.jcs import canonical_json
from onceonly.hub.registry.exceptions import InvalidSchema

Validator = jsonschema_rs.Draft202012Validator

_MAX_CACHED = 4096
_compiled: dict[str, Validator] = {}


def fingerprint(schema: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(schema)).hexdigest()


def compile_schema(schema: dict[str, Any]) -> Validator:
    """A validator for ``schema``; InvalidSchema (with the JSON pointer) if none can be built."""
    try:
        return Validator(
            schema,
            validate_formats=True,
            ignore_unknown_formats=False,
            pattern_options=jsonschema_rs.RegexOptions(),
            offline=True,
        )
    except jsonschema_rs.ValidationError as error:
        where = "".join(f"/{p}" for p in error.instance_path) or "/"
        message = str(error.message).splitlines()[0][:300]
        raise InvalidSchema(f"{where}: the hub's validator cannot use it: {message}") from None


def validator_for(schema: dict[str, Any], schema_fingerprint: str) -> Validator:
    """The compiled validator of a schema version (versions never change, so no expiry)."""
    validator = _compiled.get(schema_fingerprint)
    if validator is None:
        if len(_compiled) >= _MAX_CACHED:
            _compiled.clear()
        validator = compile_schema(schema)
        _compiled[schema_fingerprint] = validator
    return validator


# What a record itself may fail after members were cut from it, however its members
# are: too few members, or one it requires missing. Any other failure at the record
# itself (not, if/then/else, oneOf, dependentSchemas) names no member to cut.
_COUNTS = frozenset({"required", "dependentRequired", "minProperties", "maxProperties"})
# Rounds of first errors before every error is asked for: each validates the whole rest
# (2,700 failing fields beside a large valid one took 4.3 s one by one: helper-170)
_FIRST_ERRORS = 16


def failing_fields(validator: Validator, record: dict[str, Any]) -> set[str] | None:
    """The top-level members of ``record`` that something under them fails; None when
    the record itself fails otherwise than by missing or too few members (helper-158:
    a root ``not`` or ``oneOf`` refusing a nested member names the record, not the
    member), so that no member can be said to be the one at fault.

    jsonschema-rs builds every error before the first is given (240,000 wrong elements:
    2.6 s with the event loop held, helper-166), so the record is checked whole first,
    then one error at a time, each field it names set aside, as long as the first error
    names one; only a record whose first error is at the record itself is walked in
    full."""
    if validator.is_valid(record):
        return set()
    fields: set[str] = set()
    rest = dict(record)
    for _ in range(_FIRST_ERRORS):  # each round validates what is left: bounded
        if not rest:
            break
        try:
            validator.validate(rest)
        except jsonschema_rs.ValidationError as first:
            if len(first.instance_path) == 0:
                break  # at the record itself: what follows needs every error
            name = str(first.instance_path[0])
            fields.add(name)
            rest.pop(name, None)
            continue
        return fields
    for error in validator.iter_errors(rest):
        if len(error.instance_path) > 0:
            fields.add(str(error.instance_path[0]))
        elif error.kind.name not in _COUNTS and error.kind.name != "propertyNames":
            return None
    return fields


def record_errors(
    validator: Validator, record: Any, *, limit: int = 5, in_schema: bool = False
) -> list[str]:
    """JSON pointers and the failed keyword of what is wrong (no values echoed).

    ``in_schema``: the pointer into the schema (its keywords, which are published), not
    into the record, whose member names are data too: a map keyed by national
    identifiers names them in its own pointers (helper-147). For what leaves the hub
    about a record it was not given, or goes to its log.

    ``limit=1`` asks for the first error only, which jsonschema-rs gives at once (its
    ``iter_errors`` builds them all first: a large wrong record held the event loop)."""
    if limit == 1:
        try:
            validator.validate(record)
        except jsonschema_rs.ValidationError as first:
            path = first.schema_path if in_schema else first.instance_path
            return [f"{''.join(f'/{p}' for p in path) or '/'}: fails '{first.kind.name}'"]
        return []
    errors = []
    for error in validator.iter_errors(record):
        path = error.schema_path if in_schema else error.instance_path
        where = "".join(f"/{p}" for p in path) or "/"
        errors.append(f"{where}: fails '{error.kind.name}'")
        if len(errors) >= limit:
            break
    return errors
