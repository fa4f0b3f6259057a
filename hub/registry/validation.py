"""Record validation against item schemas: compiled once, cached by fingerprint.

Validators are built with an empty ``referencing`` registry, so a ``$ref`` can only
resolve inside the schema itself: nothing is ever retrieved.
"""

import hashlib
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry

from hub.kit.jcs import canonical_json

_MAX_CACHED = 4096
_compiled: dict[str, Draft202012Validator] = {}


def fingerprint(schema: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(schema)).hexdigest()


def validator_for(schema: dict[str, Any], schema_fingerprint: str) -> Draft202012Validator:
    """The compiled validator of a schema version (versions never change, so no expiry)."""
    validator = _compiled.get(schema_fingerprint)
    if validator is None:
        if len(_compiled) >= _MAX_CACHED:
            _compiled.clear()
        validator = Draft202012Validator(
            schema, registry=Registry(), format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        _compiled[schema_fingerprint] = validator
    return validator


def record_errors(validator: Draft202012Validator, record: Any, *, limit: int = 5) -> list[str]:
    """JSON pointers and the failed keyword of what is wrong (no values echoed)."""
    errors = []
    for error in validator.iter_errors(record):
        pointer = "".join(f"/{p}" for p in error.absolute_path) or "/"
        errors.append(f"{pointer}: fails '{error.validator}'")
        if len(errors) >= limit:
            break
    return errors
