"""Reading a record in an earlier version of its item: drop what that version does not
define. Pure, no I/O.

The exchange asks the owner for the record (always in the latest version), then,
when the consumer asked for version N, projects it onto N's schema and validates
the result against N. Projection only removes members: it never invents a value,
so a record that lacks something N requires stays invalid under N and is refused.
"""

import re
from typing import Any

from onceonly.hub.registry.schema_rules import MAX_SCHEMA_DEPTH, resolve_ref


def project_to_version(
    record: dict[str, Any], schema: dict[str, Any], *, strict: bool = False
) -> dict[str, Any]:
    """``record`` without the members ``schema`` does not define.

    At the top level, only the properties the schema names are kept (grants name
    top-level fields, so an undefined one is never delivered). Deeper down, an
    object loses the members its subschema would refuse anyway: those that are
    neither in ``properties`` nor matched by ``patternProperties`` where
    ``additionalProperties`` is ``false``. Arrays are projected element by
    element through ``prefixItems`` and ``items``; local ``$ref`` are followed.

    ``strict`` (cutting a record down to the version a grant was decided on): an
    object whose subschema lists ``properties`` or ``patternProperties`` and says
    nothing of ``additionalProperties`` is read as closed, so members a later version
    added inside it are dropped too. An explicit ``additionalProperties`` schema (a
    map by design) keeps its members.

    A member whose subschema is reached through a reference that names nothing (the
    registry stores no such schema) is dropped whole: projection fails closed.
    """
    properties = schema.get("properties")
    names = properties if isinstance(properties, dict) else {}
    projected = {
        name: _project(value, schema, names[name], MAX_SCHEMA_DEPTH, strict)
        for name, value in record.items()
        if name in names
    }
    return {name: value for name, value in projected.items() if value is not _DROP}


class _Unresolved:
    """What a reference that names nothing resolves to (the registry never stores one)."""


# A member whose schema cannot be read is delivered not at all, never as it came: a
# reference the projection cannot follow fails closed.
_DROP: Any = _Unresolved()


def _resolve(root: dict[str, Any], node: Any) -> Any:
    """``node`` with its ``$ref`` followed (:func:`schema_rules.resolve_ref`, the
    registry's one reading of a reference); ``_DROP`` for one that names nothing or loops."""
    seen: set[str] = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        found = resolve_ref(root, ref)
        if found is None or ref in seen:
            return _DROP
        seen.add(ref)
        node = found[1]
    return node


def _project(value: Any, root: dict[str, Any], node: Any, depth: int, strict: bool) -> Any:
    node = _resolve(root, node)
    if node is _DROP:
        return _DROP
    if depth <= 0 or not isinstance(node, dict):
        return value
    if strict:
        node = _flatten(root, node)
        if node is _DROP:
            return _DROP
    if isinstance(value, dict):
        return _project_object(value, root, node, depth, strict)
    if isinstance(value, list) and ("items" in node or "prefixItems" in node):
        elements = [
            element if subschema is None else _project(element, root, subschema, depth - 1, strict)
            for element, subschema in zip(value, _element_schemas(node, len(value)), strict=True)
        ]
        return _DROP if any(element is _DROP for element in elements) else elements
    return value


def _element_schemas(node: dict[str, Any], count: int) -> list[Any]:
    """Each element's subschema (JSON Schema 2020-12 §10.3.1): ``prefixItems`` by
    position, then ``items`` for the rest; None for an element neither names."""
    prefix = node.get("prefixItems")
    prefix = prefix if isinstance(prefix, list) else []
    rest = node.get("items")
    return [prefix[i] if i < len(prefix) else rest for i in range(count)]


def _project_object(
    value: dict[str, Any], root: dict[str, Any], node: dict[str, Any], depth: int, strict: bool
) -> dict[str, Any]:
    properties = node.get("properties", {})
    patterns = list(node.get("patternProperties", {}))
    closed = node.get("additionalProperties") is False or (
        strict
        and "additionalProperties" not in node
        and bool(node.get("properties") or node.get("patternProperties"))
    )
    result = {}
    for name, member in value.items():
        if name in properties:
            projected = _project(member, root, properties[name], depth - 1, strict)
            if projected is not _DROP:
                result[name] = projected
        elif closed and not any(re.search(p, name) for p in patterns):
            continue
        else:
            result[name] = member
    return result


_BRANCHES = ("allOf", "anyOf", "oneOf")


def _flatten(root: dict[str, Any], node: dict[str, Any]) -> Any:
    """For ``strict``: what ``node`` and the ``allOf``/``anyOf``/``oneOf`` branches it
    reaches (``$ref`` followed) declare of an instance, as one subschema: every
    property (the first subschema found for a name), every pattern, the first
    ``items``; ``additionalProperties: true`` (a map, members kept) when any part
    allows other members by schema or by ``true``; ``_DROP`` when a part cannot be
    read (a reference that names nothing)."""
    properties: dict[str, Any] = {}
    patterns: dict[str, Any] = {}
    items: Any = None
    prefix_items: Any = None
    is_map = False
    stack: list[Any] = [node]
    for _ in range(4 * MAX_SCHEMA_DEPTH):  # bounded: the registry refused $ref loops
        if not stack:
            break
        part = _resolve(root, stack.pop())
        if part is _DROP:
            return _DROP
        if not isinstance(part, dict):
            is_map = is_map or part is True
            continue
        for name, subschema in _members(part, "properties"):
            properties.setdefault(name, subschema)
        for pattern, subschema in _members(part, "patternProperties"):
            patterns.setdefault(pattern, subschema)
        extra = part.get("additionalProperties")
        is_map = is_map or (extra is not None and extra is not False)
        if items is None and "items" in part:
            items = part["items"]
        if prefix_items is None and isinstance(part.get("prefixItems"), list):
            prefix_items = part["prefixItems"]
        for keyword in _BRANCHES:
            branches = part.get(keyword)
            if isinstance(branches, list):
                stack.extend(reversed(branches))
    flat: dict[str, Any] = {"properties": properties, "patternProperties": patterns}
    if items is not None:
        flat["items"] = items
    if prefix_items is not None:
        flat["prefixItems"] = prefix_items
    if is_map:
        flat["additionalProperties"] = True
    elif node.get("additionalProperties") is False:
        flat["additionalProperties"] = False
    return flat


def _members(part: dict[str, Any], keyword: str) -> list[tuple[str, Any]]:
    found = part.get(keyword)
    return list(found.items()) if isinstance(found, dict) else []


# --- when strict projection can change nothing ------------------------------------------

_MAX_REMEMBERED = 4096
_identity: dict[tuple[str, tuple[str, ...] | None], bool] = {}


def strict_projection_is_identity(
    schema: dict[str, Any], *, fingerprint: str, fields: list[str] | None
) -> bool:
    """Whether, for every record valid under ``schema``, ``project_to_version(record,
    schema, strict=True)`` keeps all of the granted ``fields`` (``None``: all fields) as
    they are, so that the exchange may skip it. Remembered per schema version
    (``fingerprint``) and fields: the record query's hot path pays a lookup.

    True when each granted field is a declared property (and, for all fields, the root
    is closed) and every object schema the projection would reach under them declares
    what it allows: ``additionalProperties: false`` (a valid record has no other
    member) or a map (``additionalProperties`` a schema or ``true``, members kept), with
    no ``patternProperties`` (matched by another engine than the validator's) and no
    reference it cannot follow. An object that lists properties and says nothing of
    ``additionalProperties`` is read as closed by strict projection: it may drop members
    a valid record has, so the projection runs."""
    key = (fingerprint, None if fields is None else tuple(fields))
    known = _identity.get(key)
    if known is None:
        if len(_identity) >= _MAX_REMEMBERED:
            _identity.clear()
        known = _identity[key] = _identity_for(schema, fields)
    return known


def _identity_for(schema: dict[str, Any], fields: list[str] | None) -> bool:
    properties = schema.get("properties")
    names = properties if isinstance(properties, dict) else {}
    if fields is None:
        closed_root = schema.get("additionalProperties") is False
        if not closed_root or schema.get("patternProperties"):
            return False
        fields = list(names)
    seen: set[int] = set()
    return all(name in names and _keeps_all(schema, names[name], seen) for name in fields)


def _keeps_all(root: dict[str, Any], node: Any, seen: set[int]) -> bool:
    """Whether strict projection keeps every member of any value valid under ``node``."""
    node = _resolve(root, node)
    if node is _DROP:
        return False
    if not isinstance(node, dict) or id(node) in seen:
        return True  # a boolean schema keeps the value; a node seen is being checked
    seen.add(id(node))
    flat = _flatten(root, node)
    if flat is _DROP or flat["patternProperties"]:
        return False
    if "additionalProperties" not in flat and flat["properties"]:
        return False  # read as closed, though a valid record may have other members
    subschemas = [
        *flat["properties"].values(),
        *([flat["items"]] if "items" in flat else []),
        *flat.get("prefixItems", []),
    ]
    return all(_keeps_all(root, subschema, seen) for subschema in subschemas)
