"""Reading a record in an earlier version of its item: drop what that version does not
define. Pure, no I/O.

The exchange asks the owner for the record (always in the latest version), then,
when the consumer asked for version N, projects it onto N's schema and validates
the result against N. Projection only removes members: it never invents a value,
so a record that lacks something N requires stays invalid under N and is refused.
"""

import re
from typing import Any

from hub.registry.schema_rules import MAX_SCHEMA_DEPTH


def project_to_version(
    record: dict[str, Any], schema: dict[str, Any], *, strict: bool = False
) -> dict[str, Any]:
    """``record`` without the members ``schema`` does not define.

    At the top level, only the properties the schema names are kept (grants name
    top-level fields, so an undefined one is never delivered). Deeper down, an
    object loses the members its subschema would refuse anyway: those that are
    neither in ``properties`` nor matched by ``patternProperties`` where
    ``additionalProperties`` is ``false``. Arrays are projected element by
    element through ``items``; local ``$ref`` are followed.

    ``strict`` (cutting a record down to the version a grant was decided on): an
    object whose subschema lists ``properties`` or ``patternProperties`` and says
    nothing of ``additionalProperties`` is read as closed, so members a later version
    added inside it are dropped too. An explicit ``additionalProperties`` schema (a
    map by design) keeps its members.
    """
    properties = schema.get("properties")
    names = properties if isinstance(properties, dict) else {}
    return {
        name: _project(value, schema, names[name], MAX_SCHEMA_DEPTH, strict)
        for name, value in record.items()
        if name in names
    }


def _resolve(root: dict[str, Any], node: Any) -> Any:
    seen: set[str] = set()
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if ref in seen or not (ref == "#" or ref.startswith("#/")):
            return True
        seen.add(ref)
        node = _target(root, ref)
    return node


def _target(root: dict[str, Any], ref: str) -> Any:
    target: Any = root
    tokens = [] if ref == "#" else ref[2:].split("/")
    for token in tokens:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and token in target:
            target = target[token]
        elif isinstance(target, list) and token.isdigit() and int(token) < len(target):
            target = target[int(token)]
        else:
            return True  # the registry never stores such a schema; keep the value as is
    return target


def _project(value: Any, root: dict[str, Any], node: Any, depth: int, strict: bool) -> Any:
    node = _resolve(root, node)
    if depth <= 0 or not isinstance(node, dict):
        return value
    if isinstance(value, dict):
        return _project_object(value, root, node, depth, strict)
    if isinstance(value, list) and "items" in node:
        return [_project(element, root, node["items"], depth - 1, strict) for element in value]
    return value


def _project_object(
    value: dict[str, Any], root: dict[str, Any], node: dict[str, Any], depth: int, strict: bool
) -> dict[str, Any]:
    properties = node.get("properties", {})
    patterns = list(node.get("patternProperties", {}))
    closed = node.get("additionalProperties") is False or (
        strict
        and "additionalProperties" not in node
        and ("properties" in node or "patternProperties" in node)
    )
    result = {}
    for name, member in value.items():
        if name in properties:
            result[name] = _project(member, root, properties[name], depth - 1, strict)
        elif closed and not any(re.search(p, name) for p in patterns):
            continue
        else:
            result[name] = member
    return result
