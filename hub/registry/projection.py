"""Reading a record in an earlier version of its item: drop what that version does not
define. Pure, no I/O.

The exchange asks the owner for the record (always in the latest version), then,
when the consumer asked for version N, projects it onto N's schema and validates
the result against N. Projection only removes members: it never invents a value,
so a record that lacks something N requires stays invalid under N and is refused.
"""

from typing import Any

from onceonly.hub.registry.schema_rules import MAX_SCHEMA_DEPTH, resolve_ref
from onceonly.hub.registry.validation import Validator, compile_schema

# Deeper than the deepest value an owner's answer may hold (exchange.owner's
# MAX_ANSWER_DEPTH): a member nested deeper is dropped, never delivered unprojected.
MAX_DEPTH = 64


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
        name: _project(value, schema, names[name], MAX_DEPTH, strict)
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
    if not isinstance(node, dict):
        return value  # a boolean schema: true keeps the value (false: no valid record)
    if depth <= 0 and isinstance(value, dict | list):
        return _DROP  # deeper than any owner's answer the hub takes: fails closed
    parts = _parts(root, node) if strict else [node]
    if parts is _DROP:
        return _DROP
    if isinstance(value, dict):
        return _project_object(value, root, parts, depth, strict)
    if isinstance(value, list):
        return _project_array(value, root, parts, depth, strict)
    return value


def _through(
    value: Any, root: dict[str, Any], subschemas: list[Any], depth: int, strict: bool
) -> Any:
    """``value`` projected through each of ``subschemas`` in turn: what every one of
    them keeps (a validator applies them all)."""
    for subschema in subschemas:
        value = _project(value, root, subschema, depth, strict)
        if value is _DROP:
            return _DROP
    return value


def _project_array(
    value: list[Any], root: dict[str, Any], parts: list[Any], depth: int, strict: bool
) -> Any:
    """Each element through every subschema that applies to it (JSON Schema 2020-12
    §10.3.1): ``prefixItems`` by position, then ``items`` for the rest; an element
    that none names is kept as it is."""
    elements = []
    for index, element in enumerate(value):
        applies = [
            subschema
            for part in parts
            if isinstance(part, dict) and (subschema := _element_schema(part, index)) is not _NONE
        ]
        projected = _through(element, root, applies, depth - 1, strict)
        if projected is _DROP:
            return _DROP
        elements.append(projected)
    return elements


_NONE: Any = object()  # no subschema names the element


def _element_schema(part: dict[str, Any], index: int) -> Any:
    prefix = part.get("prefixItems")
    if isinstance(prefix, list) and index < len(prefix):
        return prefix[index]
    return part["items"] if "items" in part else _NONE


def _project_object(
    value: dict[str, Any], root: dict[str, Any], parts: list[Any], depth: int, strict: bool
) -> dict[str, Any]:
    """Each member through every subschema that applies to it, as a validator applies
    them: in each part, ``properties`` of its name and every ``patternProperties``
    pattern that matches it (with the validator's engine), else that part's
    ``additionalProperties`` schema (a map's value). A member no part declares is kept
    when a part allows other members (``additionalProperties: true``, a ``true``
    part), dropped when a part closes the object (``additionalProperties: false``; in
    ``strict``, a part that lists ``properties`` or ``patternProperties`` and says
    nothing of ``additionalProperties``), else kept."""
    result = {}
    for name, member in value.items():
        applies: list[Any] = []
        declared = allowed = closed = False
        for part in parts:
            if part is True:
                allowed = True
                continue
            if not isinstance(part, dict):
                continue
            named = _members(part, "properties")
            patterns = _members(part, "patternProperties")
            extra = part.get("additionalProperties")
            found = [subschema for key, subschema in named if key == name]
            found += [subschema for pattern, subschema in patterns if _matches(pattern, name)]
            if found:
                applies += found
                declared = True
            elif isinstance(extra, dict):
                applies.append(extra)
                declared = True
            elif extra is True:
                allowed = True
            if extra is False or (strict and extra is None and (named or patterns)):
                closed = True
        if not declared:
            if closed and not allowed:
                continue
            result[name] = member
            continue
        projected = _through(member, root, applies, depth - 1, strict)
        if projected is not _DROP:
            result[name] = projected
    return result


_BRANCHES = ("allOf", "anyOf", "oneOf")


def _parts(root: dict[str, Any], node: dict[str, Any]) -> Any:
    """For ``strict``: ``node`` and the ``allOf``/``anyOf``/``oneOf`` branches it
    reaches (``$ref`` followed), each as it is (a boolean branch too); ``_DROP`` when one
    cannot be read (a reference that names nothing). A member is projected through
    what every part that names it says of it, so that a branch cannot keep what another
    one cuts; for ``anyOf`` and ``oneOf``, of which a record needs to meet only one,
    that may cut a member the branch it meets keeps: projection fails closed."""
    parts: list[Any] = []
    stack: list[Any] = [node]
    for _ in range(4 * MAX_SCHEMA_DEPTH):  # bounded: the registry refused $ref loops
        if not stack:
            break
        part = _resolve(root, stack.pop())
        if part is _DROP:
            return _DROP
        parts.append(part)
        if isinstance(part, dict):
            for keyword in _BRANCHES:
                branches = part.get(keyword)
                if isinstance(branches, list):
                    stack.extend(reversed(branches))
    return parts


def _members(part: dict[str, Any], keyword: str) -> list[tuple[str, Any]]:
    found = part.get(keyword)
    return list(found.items()) if isinstance(found, dict) else []


_patterns: dict[str, Validator] = {}


def _matches(pattern: str, name: str) -> bool:
    """Whether ``pattern`` matches the member name ``name`` as the hub's validator
    matches it: its ECMA-262 reading, with the linear-time engine (an owner's record
    chooses its member names: Python's backtracking ``re`` could be made to take
    seconds by one, with the GIL held)."""
    validator = _patterns.get(pattern)
    if validator is None:
        if len(_patterns) >= _MAX_REMEMBERED:
            _patterns.clear()
        validator = _patterns[pattern] = compile_schema({"type": "string", "pattern": pattern})
    return bool(validator.is_valid(name))


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
    parts = _parts(root, node)
    if parts is _DROP:
        return False
    shapes = [part for part in parts if isinstance(part, dict)]
    if any(_members(part, "patternProperties") for part in shapes):
        return False
    named = [subschema for part in shapes for _, subschema in _members(part, "properties")]
    maps = [
        part["additionalProperties"]
        for part in shapes
        if isinstance(part.get("additionalProperties"), dict)
    ]
    allows = (
        maps or True in parts or any(part.get("additionalProperties") is True for part in shapes)
    )
    if named and not allows and node.get("additionalProperties") is not False:
        return False  # read as closed, though a valid record may have other members
    subschemas = [
        *named,
        *maps,
        *(part["items"] for part in shapes if "items" in part),
        *(item for part in shapes for item in _list(part.get("prefixItems"))),
    ]
    return all(_keeps_all(root, subschema, seen) for subschema in subschemas)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
