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
    return _Reading(schema, strict).record(record)


class _Unresolved:
    """What a schema the projection cannot read resolves to."""


# A member whose schema cannot be read is delivered not at all, never as it came.
_DROP: Any = _Unresolved()
_NONE: Any = object()  # no subschema names the element
_BRANCHES = ("allOf", "anyOf", "oneOf")
_SOME = ("anyOf", "oneOf")  # a record needs to meet only one of their branches


class _Parts:
    """The parts one value is read through (see :meth:`_Reading.parts`), merged for
    reading members: which parts' ``properties`` name a member, the parts with
    patterns, the maps (a part whose ``additionalProperties`` is a schema), the parts
    that close the object (``additionalProperties: false``), each built once per set
    of parts, so that each member costs a lookup, not a walk over the parts."""

    __slots__ = (
        "allowed",
        "closing",
        "maps",
        "named",
        "parts",
        "patterned",
        "read_closed",
        "shapes",
    )

    def __init__(self, parts: list[Any], strict: bool) -> None:
        self.parts = parts
        shapes = [part for part in parts if isinstance(part, dict)]
        self.shapes = shapes
        self.named: dict[str, list[tuple[int, Any]]] = {}
        self.patterned: list[tuple[int, list[tuple[str, Any]]]] = []
        self.maps: list[tuple[int, Any]] = []
        self.closing: list[int] = []
        self.allowed = any(part is True for part in parts)
        self.read_closed = False
        for index, part in enumerate(shapes):
            properties = part.get("properties")
            if isinstance(properties, dict):
                for name, subschema in properties.items():
                    self.named.setdefault(name, []).append((index, subschema))
            patterns = part.get("patternProperties")
            if isinstance(patterns, dict) and patterns:
                self.patterned.append((index, list(patterns.items())))
            extra = part.get("additionalProperties")
            if isinstance(extra, dict):
                self.maps.append((index, extra))
            elif extra is True:
                self.allowed = True
            elif extra is False:
                self.closing.append(index)
            if strict and extra is None and (properties or patterns):
                self.read_closed = True

    def member(self, name: str) -> tuple[list[Any], bool, bool]:
        """The subschemas that apply to a member ``name``, whether a part's
        ``properties`` names it, and whether a part that closes the object does not name
        it (so a valid record has no such member)."""
        found = self.named.get(name, ())
        applies = [subschema for _, subschema in found]
        declaring = {index for index, _ in found}
        for index, patterns in self.patterned:
            if _any_matches(patterns, name):
                matched = [schema for pattern, schema in patterns if _matches(pattern, name)]
                if matched:
                    applies += matched
                    declaring.add(index)
        applies += [extra for index, extra in self.maps if index not in declaring]
        refused = any(index not in declaring for index in self.closing)
        return applies, bool(found), refused


class _Reading:
    """One projection: the schema it reads, and what it learnt of the schema's parts
    (each set of schemas is read once however many values meet it: the elements of an
    array, the values of a map, the levels of a recursive schema)."""

    def __init__(self, root: dict[str, Any], strict: bool) -> None:
        self.root = root
        self.strict = strict
        self._known: dict[tuple[int, ...], Any] = {}

    def record(self, record: dict[str, Any]) -> dict[str, Any]:
        parts = self.parts([self.root])
        if parts is _DROP:
            return {}
        # the record's own members at MAX_DEPTH, as deep as a field's value may go
        return self._object(record, parts, MAX_DEPTH + 1, top=True)

    def parts(self, nodes: list[Any]) -> Any:
        """The parts ``nodes`` are read through (:class:`_Parts`): each node, each local
        ``$ref``'s target beside the keywords next to it, and (``strict``) each
        ``allOf``/``anyOf``/``oneOf`` branch reached, each part once, by identity.
        ``_DROP`` for a ``false`` schema that a value must meet (an ``anyOf``/``oneOf``
        branch that is ``false`` is no part), a reference that names nothing, or more
        than :data:`MAX_PARTS` parts."""
        key = tuple(id(node) for node in nodes)
        known = self._known.get(key, _NONE)
        if known is _NONE:
            gathered = self._gather(nodes)
            known = gathered if gathered is _DROP else _Parts(gathered, self.strict)
            self._known[key] = known
        return known

    def _gather(self, nodes: list[Any]) -> Any:
        parts: list[Any] = []
        seen: set[int] = set()
        stack = list(reversed(nodes))
        while stack:
            node = stack.pop()
            if node is True:
                if True not in parts:
                    parts.append(True)
                continue
            if not isinstance(node, dict):
                return _DROP  # false, or not a schema: nothing valid, nothing kept
            if id(node) in seen:
                continue  # read already (a reference loop ends here too)
            seen.add(id(node))
            if len(node) != 1 or "$ref" not in node:  # a bare reference is no part
                if len(parts) >= MAX_PARTS:
                    return _DROP
                parts.append(node)
            if "$ref" in node:
                found = resolve_ref(self.root, node["$ref"])
                if found is None:
                    return _DROP
                stack.append(found[1])
            if self.strict:
                for keyword in _BRANCHES:
                    branches = node.get(keyword)
                    if isinstance(branches, list):
                        stack.extend(
                            branch
                            for branch in reversed(branches)
                            if not (keyword in _SOME and branch is False)
                        )
        return parts

    def value(self, value: Any, nodes: list[Any], depth: int) -> Any:
        """``value`` through every schema of ``nodes`` at once (what all of them keep)."""
        if not isinstance(value, dict | list):
            if all(_plain(node, self.strict) for node in nodes):
                return value  # no part to look for: a scalar is kept as it is
            return _DROP if self.parts(nodes) is _DROP else value
        if depth <= 0:
            return _DROP  # deeper than any owner's answer the hub takes: fails closed
        parts = self.parts(nodes)
        if parts is _DROP:
            return _DROP
        if isinstance(value, dict):
            return self._object(value, parts, depth)
        return self._array(value, parts, depth)

    def _array(self, value: list[Any], parts: _Parts, depth: int) -> Any:
        """Each element through every subschema that applies to it (JSON Schema 2020-12
        §10.3.1): ``prefixItems`` by position, then ``items`` for the rest (the same for
        every element past the prefix: found once); an element that none names is kept
        as it is."""
        prefix = max(
            (
                len(part["prefixItems"])
                for part in parts.shapes
                if isinstance(part.get("prefixItems"), list)
            ),
            default=0,
        )
        rest = [part["items"] for part in parts.shapes if "items" in part]
        elements = []
        for index, element in enumerate(value):
            applies = (
                [
                    subschema
                    for part in parts.shapes
                    if (subschema := _element_schema(part, index)) is not _NONE
                ]
                if index < prefix
                else rest
            )
            projected = self.value(element, applies, depth - 1)
            if projected is _DROP:
                return _DROP
            elements.append(projected)
        return elements

    def _object(
        self, value: dict[str, Any], parts: _Parts, depth: int, *, top: bool = False
    ) -> dict[str, Any]:
        """Each member through every subschema that applies to it (see
        :func:`project_to_version`). ``top``: the record itself, whose members are kept
        only where a part's ``properties`` names them."""
        result = {}
        for name, member in value.items():
            applies, named, refused = parts.member(name)
            if refused or (top and not named):
                continue
            if not applies:  # no part says anything of it
                if parts.read_closed and not parts.allowed:
                    continue
                result[name] = member
                continue
            projected = self.value(member, applies, depth - 1)
            if projected is not _DROP:
                result[name] = projected
        return result


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


def _element_schema(part: dict[str, Any], index: int) -> Any:
    prefix = part.get("prefixItems")
    if isinstance(prefix, list) and index < len(prefix):
        return prefix[index]
    return part["items"] if "items" in part else _NONE


# --- patterns, as the validator matches them -----------------------------------------------

_MAX_REMEMBERED = 4096
_patterns: dict[str, Validator] = {}
_alternatives: dict[tuple[str, ...], list[Validator]] = {}


def _matches(pattern: str, name: str) -> bool:
    """Whether ``pattern`` matches the member name ``name`` as the hub's validator
    matches it: its ECMA-262 reading, with the linear-time engine (an owner's record
    chooses its member names: Python's backtracking ``re`` could be made to take
    seconds by one, with the GIL held)."""
    validator = _patterns.get(pattern)
    if validator is None:
        if len(_patterns) >= _MAX_REMEMBERED:
            _patterns.clear()
        validator = _patterns[pattern] = _pattern_validator(pattern)
    return bool(validator.is_valid(name))


def _pattern_validator(pattern: str) -> Validator:
    return compile_schema({"type": "string", "pattern": pattern})


def _any_matches(patterns: list[tuple[str, Any]], name: str) -> bool:
    """Whether any of ``patterns`` matches ``name``: one call of the validator's engine
    for all of them (each name of a large record meets every pattern); where the
    engine cannot take them joined (its size limit), joined in halves, and so on."""
    key = tuple(pattern for pattern, _ in patterns)
    if len(key) == 1:
        return _matches(key[0], name)
    joined = _alternatives.get(key)
    if joined is None:
        if len(_alternatives) >= _MAX_REMEMBERED:
            _alternatives.clear()
        joined = _alternatives[key] = _join(list(key))
    return any(validator.is_valid(name) for validator in joined)


def _join(patterns: list[str]) -> list[Validator]:
    """Validators matching where any of ``patterns`` does: as few as the engine takes."""
    if len(patterns) == 1:
        return [_pattern_validator(patterns[0])]
    try:
        return [_pattern_validator("|".join(f"(?:{pattern})" for pattern in patterns))]
    except Exception:  # the engine's size limit: each half joined on its own
        half = len(patterns) // 2
        return _join(patterns[:half]) + _join(patterns[half:])


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
    if any(keyword in schema for keyword in (*_BRANCHES, "$ref", "patternProperties")):
        return False  # the root's own branches and patterns: read through the projection
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
    reading = _Reading(root, strict=True)
    seen: set[int] = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if node is True or node is False or id(node) in seen:
            continue  # false: no valid value is there to keep
        seen.add(id(node))
        read = reading.parts([node])
        if read is _DROP:
            return False
        for part in read.parts:
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
