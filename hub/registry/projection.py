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

from collections.abc import Iterator
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


# Subschema reads one projection may make (a member or an element read through n
# subschemas counts n): half a second of the event loop at most. A common record
# makes a few thousand.
WORK_BUDGET = 1_000_000


class TooCostly(ValueError):
    """The record would take too long to cut down to the version: not delivered."""


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
    of parts, so that each member costs a lookup, not a walk over the parts.

    A part reached only through an ``anyOf``/``oneOf`` branch is *optional*: a record
    need not meet it, so it declares members but its ``additionalProperties: false``
    cuts only members no part declares (the branches of a union of closed objects cut
    each other's members otherwise: helper-166). What is kept is then checked against
    the version (the exchange)."""

    __slots__ = (
        "allowed",
        "by_pattern",
        "closing",
        "loose",
        "maps",
        "named",
        "parts",
        "patterned",
        "patterns",
        "read_closed",
        "shapes",
        "tries",
        "undeclared",
        "undeclared_parts",
        "undeclared_plain",
    )

    def __init__(self, parts: list[Any], optional: set[int], strict: bool) -> None:
        self.parts = parts
        shapes = [part for part in parts if isinstance(part, dict)]
        self.shapes = shapes
        self.named: dict[str, list[tuple[int, Any]]] = {}
        self.patterned: list[tuple[int, list[tuple[str, Any]]]] = []
        self.maps: list[tuple[int, Any]] = []
        self.closing: list[int] = []  # parts a record must meet that close the object
        self.loose = False  # an optional part closes the object
        self.allowed = False  # a part says additionalProperties: true
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
                if id(part) in optional:
                    self.loose = True
                else:
                    self.closing.append(index)
            if strict and extra is None and (properties or patterns):
                self.read_closed = True
        # every part's patterns, tried together first (one call for a name none matches);
        # each distinct pattern tried once a name, whatever the parts that hold it
        self.patterns = [pair for _, pairs in self.patterned for pair in pairs]
        self.by_pattern: dict[str, list[tuple[int, Any]]] = {}
        for index, pairs in self.patterned:
            for pattern, subschema in pairs:
                self.by_pattern.setdefault(pattern, []).append((index, subschema))
        # what applies to a name no part names and no pattern matches: the same for all
        self.undeclared = [extra for _, extra in self.maps]
        self.undeclared_parts: Any = None  # their parts, read once (see _Reading._object)
        self.undeclared_plain = all(_plain(node, strict) for node in self.undeclared)
        self.tries = 0  # patterns tried one by one for names that matched one

    def member(self, name: str) -> tuple[list[Any], bool, bool]:
        """The subschemas that apply to a member ``name``, whether a part's
        ``properties`` names it, and whether a part the record must meet closes the
        object without naming it (so a valid record has no such member)."""
        found = self.named.get(name)
        matched = bool(self.patterns) and _any_matches(self.patterns, name)
        if found is None and not matched:
            return self.undeclared, False, bool(self.closing)
        applies = [subschema for _, subschema in found or ()]
        declaring = {index for index, _ in found or ()}
        if matched:
            self.tries += len(self.by_pattern)  # counted against the budget (helper-170)
            for pattern, holders in self.by_pattern.items():
                if _matches(pattern, name):
                    applies += [subschema for _, subschema in holders]
                    declaring.update(index for index, _ in holders)
        applies += [extra for index, extra in self.maps if index not in declaring]
        refused = any(index not in declaring for index in self.closing)
        return applies, found is not None, refused


class _Reading:
    """One projection: the schema it reads, and what it learnt of the schema's parts
    (each set of schemas is read once however many values meet it: the elements of an
    array, the values of a map, the levels of a recursive schema)."""

    def __init__(self, root: dict[str, Any], strict: bool) -> None:
        self.root = root
        self.strict = strict
        self._known: dict[tuple[int, ...], Any] = {}
        self._work = 0

    def _spend(self, units: int) -> None:
        """Count the subschemas members and elements are read through: past
        :data:`WORK_BUDGET`, :class:`TooCostly` (a record and schema made to hold the
        hub's event loop: helper-166's 126 parts by 90,000 members took 11 s)."""
        self._work += units
        if self._work > WORK_BUDGET:
            raise TooCostly(f"cutting the record down took more than {WORK_BUDGET} reads")

    def record(self, record: dict[str, Any]) -> dict[str, Any]:
        parts = self.parts([self.root])
        if parts is _DROP:
            return {}
        # the record's own members at MAX_DEPTH, as deep as a field's value may go
        return self._object(record, parts, MAX_DEPTH + 1, top=True)

    def parts(self, nodes: list[Any]) -> Any:
        """The parts ``nodes`` are read through (:class:`_Parts`): each node, each local
        ``$ref``'s target beside the keywords next to it, and (``strict``) each branch
        reached (``allOf``; optional: ``anyOf``, ``oneOf``), each part once, by
        identity. ``_DROP`` for a ``false``
        schema that a value must meet (an optional one is no part), a reference that
        names nothing, or more than :data:`MAX_PARTS` parts."""
        key = tuple(id(node) for node in nodes)
        known = self._known.get(key, _NONE)
        if known is _NONE:
            known = self._gather(nodes)
            self._known[key] = known
        return known

    def _gather(self, nodes: list[Any]) -> Any:
        parts: list[Any] = []
        optional: set[int] = set()
        seen: set[int] = set()
        stack = [(node, False) for node in reversed(nodes)]
        while stack:
            node, maybe = stack.pop()
            if node is True:
                if True not in parts:
                    parts.append(True)
                continue
            if not isinstance(node, dict):
                if maybe:
                    continue  # a false branch a record need not meet: no part
                return _DROP  # false, or not a schema: nothing valid, nothing kept
            if id(node) in seen:
                if not maybe:
                    optional.discard(id(node))  # reached as a part the record must meet
                continue  # read already (a reference loop ends here too)
            seen.add(id(node))
            if len(node) != 1 or "$ref" not in node:  # a bare reference is no part
                if len(parts) >= MAX_PARTS:
                    return _DROP
                parts.append(node)
                if maybe:
                    optional.add(id(node))
            if "$ref" in node:
                found = resolve_ref(self.root, node["$ref"])
                if found is None:
                    return _DROP
                stack.append((found[1], maybe))
            if self.strict:
                stack.extend(reversed(list(_branches(node, maybe))))
        return _Parts(parts, optional, self.strict)

    def value(self, value: Any, nodes: list[Any], depth: int) -> Any:
        """``value`` through every schema of ``nodes`` at once (what all of them keep)."""
        if not isinstance(value, dict | list):
            if all(_plain(node, self.strict) for node in nodes):
                return value  # no part to look for: a scalar is kept as it is
            return _DROP if self.parts(nodes) is _DROP else value
        return self._through(value, self.parts(nodes), depth)

    def _through(self, value: Any, parts: Any, depth: int) -> Any:
        if depth <= 0 or parts is _DROP:
            return _DROP  # deeper than any owner's answer the hub takes: fails closed
        if isinstance(value, dict):
            return self._object(value, parts, depth)
        return self._array(value, parts, depth)

    def _array(self, value: list[Any], parts: _Parts, depth: int) -> Any:
        """Each element through every subschema that applies to it (JSON Schema 2020-12
        §10.3.1): ``prefixItems`` by position, then ``items`` for the rest (the same for
        every element past the prefix: read once); an element that none names is kept
        as it is, except in ``strict``, where a tuple (``prefixItems``) that says nothing
        of the rest is read as closed, as an object is."""
        prefix = max(
            (
                len(part["prefixItems"])
                for part in parts.shapes
                if isinstance(part.get("prefixItems"), list)
            ),
            default=0,
        )
        rest = [part["items"] for part in parts.shapes if "items" in part]
        if self.strict and prefix and (not rest or False in rest):
            value = value[:prefix]  # a later version's elements past the tuple: cut
        rest_plain = all(_plain(node, self.strict) for node in rest)
        rest_parts: Any = _NONE
        elements = []
        for index, element in enumerate(value):
            if index < prefix:
                applies = [
                    subschema
                    for part in parts.shapes
                    if (subschema := _element_schema(part, index)) is not _NONE
                ]
                self._spend(len(applies))
                projected = self.value(element, applies, depth - 1)
            elif not isinstance(element, dict | list) and rest_plain:
                self._spend(1)  # read once for all: the element is kept as it is
                projected = element
            else:
                self._spend(len(rest))
                if rest_parts is _NONE:
                    rest_parts = self.parts(rest)
                if isinstance(element, dict | list):
                    projected = self._through(element, rest_parts, depth - 1)
                else:
                    projected = _DROP if rest_parts is _DROP else element
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
        closed = (parts.read_closed or parts.loose) and not parts.allowed
        for name, member in value.items():
            tried = parts.tries
            applies, named, refused = parts.member(name)
            self._spend(parts.tries - tried)
            if refused or (top and not named):
                continue
            if not applies:  # no part says anything of it
                if not closed:
                    result[name] = member
                continue
            if applies is parts.undeclared:  # a map's values: their schemas read once
                if not isinstance(member, dict | list) and parts.undeclared_plain:
                    self._spend(1)
                    result[name] = member
                    continue
            self._spend(len(applies))
            if applies is parts.undeclared:
                if parts.undeclared_parts is None:
                    parts.undeclared_parts = self.parts(applies)
                if isinstance(member, dict | list):
                    projected = self._through(member, parts.undeclared_parts, depth - 1)
                else:
                    projected = _DROP if parts.undeclared_parts is _DROP else member
            else:
                projected = self.value(member, applies, depth - 1)
            if projected is not _DROP:
                result[name] = projected
        return result


def _branches(node: dict[str, Any], maybe: bool) -> Iterator[tuple[Any, bool]]:
    """The subschemas strict projection reads beside ``node``'s own keywords, each with
    whether a record need not meet it: ``allOf`` (as ``node`` itself), and ``anyOf``
    and ``oneOf`` (optional)."""
    for keyword in _BRANCHES:
        branches = node.get(keyword)
        if isinstance(branches, list):
            for branch in branches:
                yield branch, maybe or keyword in _SOME
    # then, else and dependentSchemas are not read: what they declare holds only when
    # their condition does, which projection does not judge (helper-170: a member only
    # `then` declared was kept when `if` failed); such members are cut as undeclared


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
            if "prefixItems" in part and "items" not in part:
                return False  # a tuple read as closed, though a valid one may be longer
            if any(keyword in part for keyword in ("then", "else", "dependentSchemas")):
                return False  # what they declare is read as optional parts: projection runs
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
