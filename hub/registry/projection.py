"""Reading a record in an earlier version of its item: drop what that version does not
define. Pure, no I/O.

The exchange asks the owner for the record (always in the latest version), then,
when the consumer asked for version N, projects it onto N's schema and validates
the result against N. Projection only removes members: it never invents a value,
so a record that lacks something N requires stays invalid under N and is refused.

Projection reads the keywords that say which members an object has and which elements
an array has (``properties``, ``patternProperties``, ``additionalProperties``,
``prefixItems``, ``items``, ``allOf``/``anyOf``/``oneOf`` in strict projection, local
``$ref`` with the keywords beside it); it does not read ``if``/``then``/``else``,
``not``, ``dependentSchemas``, ``propertyNames`` or ``contains``. The exchange
therefore validates what strict projection keeps against the granted version too
(``exchange.service``): a field that still fails it is not delivered.
"""

from typing import Any

from onceonly.hub.registry.schema_rules import MAX_SCHEMA_DEPTH, resolve_ref
from onceonly.hub.registry.validation import Validator, compile_schema

# Deeper than the deepest value an owner's answer may hold (exchange.owner's
# MAX_ANSWER_DEPTH): a member nested deeper is dropped, never delivered unprojected.
MAX_DEPTH = 64
# Parts (a schema, the branches and references it reaches) one value is read through:
# more is a schema the hub does not read, and the value is dropped (fails closed).
MAX_PARTS = 4 * MAX_SCHEMA_DEPTH


def project_to_version(
    record: dict[str, Any], schema: dict[str, Any], *, strict: bool = False
) -> dict[str, Any]:
    """``record`` without the members ``schema`` does not define.

    At the top level, only the members that ``properties`` names are kept (grants
    name top-level fields, so an undefined one is never delivered). Deeper down, each
    member is projected through every subschema that applies to it, as a validator
    applies them: in each part of the object's schema, ``properties`` of its name and
    every ``patternProperties`` pattern that matches it (with the validator's engine),
    else that part's ``additionalProperties`` schema. A member no part declares is
    dropped where a part closes the object (``additionalProperties: false``) and no
    part allows others (``additionalProperties: true``). Arrays are projected element
    by element through ``prefixItems`` and ``items``; local ``$ref`` are followed, with
    the keywords beside them read too. A value whose schema is ``false`` is dropped.

    ``strict`` (cutting a record down to the version a grant was decided on): the parts
    are the schema and every ``allOf``/``anyOf``/``oneOf`` branch it reaches, and an
    object part that lists ``properties`` or ``patternProperties`` and says nothing of
    ``additionalProperties`` is read as closed, so members a later version added inside
    it are dropped too. For ``anyOf``/``oneOf``, of which a record meets only one, a
    member a branch allows may be cut by another: projection fails closed.

    A member whose subschema is reached through a reference that names nothing (the
    registry stores no such schema), or through more than :data:`MAX_PARTS` parts, is
    dropped whole.
    """
    parts = _expand(schema, [schema], strict)
    if parts is _DROP:
        return {}
    # the record's own members at MAX_DEPTH, as deep as a field's value may go
    return _project_object(record, schema, parts, MAX_DEPTH + 1, strict, top=True)


class _Unresolved:
    """What a schema the projection cannot read resolves to."""


# A member whose schema cannot be read is delivered not at all, never as it came.
_DROP: Any = _Unresolved()
_BRANCHES = ("allOf", "anyOf", "oneOf")
_SOME = ("anyOf", "oneOf")  # a record needs to meet only one of their branches


def _expand(root: dict[str, Any], nodes: list[Any], strict: bool) -> Any:
    """The parts ``nodes`` are read through: each node, each local ``$ref``'s target
    beside the keywords next to it, and (``strict``) each ``allOf``/``anyOf``/``oneOf``
    branch reached, each part once (by identity: a member that several parts name
    reaches its schema once, not once per part, which is what keeps projection linear
    in the record's depth). ``True`` for a ``true`` schema; ``_DROP`` for a ``false``
    one that a value must meet (an ``anyOf``/``oneOf`` branch that is ``false`` is no
    part), a reference that names nothing or loops, or more than :data:`MAX_PARTS`."""
    parts: list[Any] = []
    seen: set[int] = set()
    stack: list[tuple[Any, frozenset[str]]] = [(node, frozenset()) for node in reversed(nodes)]
    while stack:
        node, refs = stack.pop()
        if node is True:
            if not any(part is True for part in parts):
                parts.append(True)
            continue
        if not isinstance(node, dict):
            return _DROP  # false, or not a schema: nothing valid, nothing kept
        if id(node) in seen:
            continue
        seen.add(id(node))
        if len(parts) >= MAX_PARTS:
            return _DROP
        parts.append(node)
        if "$ref" in node:
            ref = node["$ref"]
            found = resolve_ref(root, ref)
            if found is None or not isinstance(ref, str) or ref in refs:
                return _DROP
            stack.append((found[1], refs | {ref}))
        if strict:
            for keyword in _BRANCHES:
                branches = node.get(keyword)
                if isinstance(branches, list):
                    stack.extend(
                        (branch, refs)
                        for branch in reversed(branches)
                        if not (keyword in _SOME and branch is False)
                    )
    return parts


def _project(value: Any, root: dict[str, Any], nodes: list[Any], depth: int, strict: bool) -> Any:
    """``value`` through every schema of ``nodes`` at once (what all of them keep)."""
    if not isinstance(value, dict | list):
        if all(_plain(node, strict) for node in nodes):
            return value  # no part to look for: a scalar is kept as it is
        parts = _expand(root, nodes, strict)
        return _DROP if parts is _DROP else value
    if depth <= 0:
        return _DROP  # deeper than any owner's answer the hub takes: fails closed
    parts = _expand(root, nodes, strict)
    if parts is _DROP:
        return _DROP
    if isinstance(value, dict):
        return _project_object(value, root, parts, depth, strict)
    return _project_array(value, root, parts, depth, strict)


def _plain(node: Any, strict: bool) -> bool:
    """A schema that is ``true`` or an object schema with no reference and (``strict``)
    no branch: nothing beyond it to read for a scalar."""
    if node is True:
        return True
    return (
        isinstance(node, dict)
        and "$ref" not in node
        and not (strict and any(keyword in node for keyword in _BRANCHES))
    )


def _project_array(
    value: list[Any], root: dict[str, Any], parts: list[Any], depth: int, strict: bool
) -> Any:
    """Each element through every subschema that applies to it (JSON Schema 2020-12
    §10.3.1): ``prefixItems`` by position, then ``items`` for the rest; an element
    that none names is kept as it is."""
    shapes = [part for part in parts if isinstance(part, dict)]
    elements = []
    for index, element in enumerate(value):
        applies = [
            subschema for part in shapes if (subschema := _element_schema(part, index)) is not _NONE
        ]
        projected = _project(element, root, applies, depth - 1, strict)
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
    value: dict[str, Any],
    root: dict[str, Any],
    parts: list[Any],
    depth: int,
    strict: bool,
    *,
    top: bool = False,
) -> dict[str, Any]:
    """Each member through every subschema that applies to it (see
    :func:`project_to_version`). ``top``: the record itself, whose members are kept only
    where a part's ``properties`` names them."""
    shapes = [_Shape.of(part) for part in parts if isinstance(part, dict)]
    allowed = any(part is True for part in parts) or any(s.extra is True for s in shapes)
    read_closed = strict and any(s.extra is None and s.names for s in shapes)
    result = {}
    for name, member in value.items():
        applies: list[Any] = []
        named = refused = False
        for shape in shapes:
            found = shape.applying(name)
            if found:
                applies += found
                named = named or name in shape.properties
            elif isinstance(shape.extra, dict):
                applies.append(shape.extra)  # a map's value
            elif shape.extra is False:
                refused = True  # a part that closes the object names it not: invalid
        if refused or (top and not named):
            continue
        if not applies:  # no part says anything of it
            if read_closed and not allowed:
                continue
            result[name] = member
            continue
        projected = _project(member, root, applies, depth - 1, strict)
        if projected is not _DROP:
            result[name] = projected
    return result


class _Shape:
    """What one object part says of members: its ``properties``, its patterns, its
    ``additionalProperties`` (None when it says nothing), read once a part."""

    __slots__ = ("extra", "names", "patterns", "properties")

    def __init__(self, part: dict[str, Any]) -> None:
        properties = part.get("properties")
        self.properties: dict[str, Any] = properties if isinstance(properties, dict) else {}
        patterns = part.get("patternProperties")
        self.patterns: list[tuple[str, Any]] = (
            list(patterns.items()) if isinstance(patterns, dict) else []
        )
        self.extra: Any = part.get("additionalProperties")
        self.names = bool(self.properties or self.patterns)

    _known: dict[int, tuple[dict[str, Any], "_Shape"]] = {}  # noqa: RUF012

    @classmethod
    def of(cls, part: dict[str, Any]) -> "_Shape":
        known = cls._known.get(id(part))
        if known is not None and known[0] is part:
            return known[1]
        if len(cls._known) >= _MAX_REMEMBERED:
            cls._known.clear()
        shape = cls(part)
        cls._known[id(part)] = (part, shape)
        return shape

    def applying(self, name: str) -> list[Any]:
        """The subschemas of ``properties`` and ``patternProperties`` for ``name``."""
        found = [self.properties[name]] if name in self.properties else []
        if self.patterns and _any_matches(self.patterns, name):
            found += [schema for pattern, schema in self.patterns if _matches(pattern, name)]
        return found


# --- patterns, as the validator matches them -----------------------------------------------

_MAX_REMEMBERED = 4096
_patterns: dict[str, Validator] = {}
_alternatives: dict[tuple[str, ...], Validator | None] = {}


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


def _any_matches(patterns: list[tuple[str, Any]], name: str) -> bool:
    """Whether any of ``patterns`` matches ``name``: one call of the validator's engine
    for all of them (each name of a large record meets every pattern), else one a
    pattern when they cannot be joined."""
    key = tuple(pattern for pattern, _ in patterns)
    if len(key) == 1:
        return _matches(key[0], name)
    if key not in _alternatives:
        if len(_alternatives) >= _MAX_REMEMBERED:
            _alternatives.clear()
        joined = "|".join(f"(?:{pattern})" for pattern in key)
        try:
            _alternatives[key] = compile_schema({"type": "string", "pattern": joined})
        except Exception:  # a pattern that does not join (the engine's size limit)
            _alternatives[key] = None
    either = _alternatives[key]
    if either is None:
        return any(_matches(pattern, name) for pattern in key)
    return bool(either.is_valid(name))


# --- when strict projection can change nothing ------------------------------------------

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
    what it allows: every part that names members says ``additionalProperties``
    (``false``: a valid record has no other member; a schema or ``true``: a map), with
    no ``patternProperties``, no ``anyOf``/``oneOf`` (a record meets one branch, and
    projection reads them all), no ``false`` schema and no reference it cannot follow.
    Anything else (or a schema too deep to look through) runs the projection."""
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
    if any(keyword in schema for keyword in (*_BRANCHES, "$ref")):
        return False  # the root's own branches: read through the projection
    if fields is None:
        closed_root = schema.get("additionalProperties") is False
        if not closed_root or schema.get("patternProperties"):
            return False
        fields = list(names)
    if not all(name in names for name in fields):
        return False
    return _keeps_all(schema, [names[name] for name in fields])


def _keeps_all(root: dict[str, Any], nodes: list[Any]) -> bool:
    """Whether strict projection keeps every member of any value valid under each of
    ``nodes`` (a walk, not a recursion: a long chain of references is no RecursionError)."""
    seen: set[int] = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if node is True or node is False or id(node) in seen:
            continue  # false: no valid value is there to keep
        seen.add(id(node))
        parts = _expand(root, [node], strict=True)
        if parts is _DROP:
            return False
        for part in parts:
            if part is True:
                continue
            if any(keyword in part for keyword in _SOME) or part.get("patternProperties"):
                return False
            extra = part.get("additionalProperties")
            if extra is None and part.get("properties"):
                return False  # read as closed, though a valid record may have other members
            properties = part.get("properties")
            stack += properties.values() if isinstance(properties, dict) else []
            if isinstance(extra, dict):
                stack.append(extra)
            if "items" in part:
                stack.append(part["items"])
            prefix = part.get("prefixItems")
            stack += prefix if isinstance(prefix, list) else []
            if len(seen) > 64 * MAX_PARTS:
                return False
    return True
