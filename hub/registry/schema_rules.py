"""What the registry accepts as a data item's JSON Schema. Pure checks, no I/O.

Each refusal names the JSON pointer (RFC 6901) of the offending part. The checks:
Draft 2020-12 only; a valid schema (the metaschema check); no ``$id`` and no ``$ref``
outside this document (nothing is ever fetched); size and nesting limits; the root
describes an object; ``x-personal`` only as a boolean.
"""

import json
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from hub.registry.exceptions import InvalidSchema

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
MAX_SCHEMA_BYTES = 64 * 1024
MAX_SCHEMA_DEPTH = 32


def _pointer(path: tuple[str | int, ...]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path) or "/"


def _walk(
    node: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, (*path, index))


def check_schema(schema: dict[str, Any]) -> None:
    """Raise InvalidSchema (with a JSON pointer) unless the registry can accept ``schema``."""
    if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise InvalidSchema(f"/: the schema is larger than {MAX_SCHEMA_BYTES} bytes")
    if schema.get("$schema") != DRAFT_2020_12:
        raise InvalidSchema(f"/$schema: must be {DRAFT_2020_12} (Draft 2020-12 only)")
    if schema.get("type") != "object":
        raise InvalidSchema(
            '/type: a data item\'s schema must describe an object ("type": "object")'
        )
    for path, node in _walk(schema):
        if len(path) > MAX_SCHEMA_DEPTH:
            raise InvalidSchema(f"{_pointer(path)}: nested deeper than {MAX_SCHEMA_DEPTH} levels")
        if not isinstance(node, dict):
            continue
        _check_keywords(node, path)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        where = _pointer(tuple(error.absolute_path))
        raise InvalidSchema(f"{where}: {error.message[:300]}") from None


def _check_keywords(node: dict[str, Any], path: tuple[str | int, ...]) -> None:
    in_properties = len(path) > 0 and path[-1] in ("properties", "$defs")
    if in_properties:
        return  # the keys here are property names, not keywords
    if "$id" in node or "$anchor" in node or "$dynamicRef" in node:
        raise InvalidSchema(f"{_pointer(path)}: $id, $anchor and $dynamicRef are not allowed")
    ref = node.get("$ref")
    if ref is not None and (not isinstance(ref, str) or not ref.startswith("#/")):
        raise InvalidSchema(
            f"{_pointer((*path, '$ref'))}: only local references (#/...) are allowed;"
            " nothing is fetched"
        )
    personal = node.get("x-personal")
    if personal is not None and not isinstance(personal, bool):
        raise InvalidSchema(f"{_pointer((*path, 'x-personal'))}: must be true or false")


def personal_fields(schema: dict[str, Any]) -> list[str]:
    """Top-level properties marked ``"x-personal": true``."""
    properties = schema.get("properties", {})
    return sorted(
        name
        for name, prop in properties.items()
        if isinstance(prop, dict) and prop.get("x-personal") is True
    )
