"""Schema compatibility: does every instance valid under A stay valid under B? Pure, no I/O.

:func:`subsumption_problem` decides "A ⊆ B" conservatively: it answers ``None``
only when it can show that every instance valid under A is valid under B, and
otherwise names the first reason why not, with the JSON pointer where it found
it. What it reasons about (docs/registry.md lists the same):

- ``true``/``false`` schemas, and ``{}``;
- ``type`` (a string or an array; ``integer`` is a subset of ``number``);
- ``enum`` and ``const``: every listed value that A accepts must be accepted by
  B (evaluated exactly, patterns and formats with the hub's own validator); a B
  with ``enum``/``const`` contains an A without only when A is ``null``/``boolean``;
- ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``;
- ``minLength``/``maxLength``, ``minItems``/``maxItems``;
- ``pattern`` and ``format``: the same on both sides, or absent from B;
- objects: ``required``, ``properties`` and ``additionalProperties`` (``true``,
  ``false`` or a schema), per property name, nested to any depth;
- arrays: ``items`` (a single schema), nested to any depth;
- local ``$ref`` (resolved in each schema's own document; recursive structures
  are judged coinductively, a ``$ref`` chain that loops is refused);
- annotations are ignored: ``title``, ``description``, ``x-personal`` and any
  ``x-`` keyword, ``$comment``, ``default``, ``examples``, ``deprecated``,
  ``readOnly``, ``writeOnly``; ``$schema`` and ``$defs`` (reached through ``$ref``).

Any other keyword (``allOf``, ``anyOf``, ``oneOf``, ``not``, ``if``/``then``/``else``,
``patternProperties``, ``dependentSchemas``, ``contains``, ``prefixItems``,
``uniqueItems``, ``multipleOf``, ...) makes it raise :class:`CannotJudge`, naming
the keyword and its JSON pointer, unless the two subschemas that hold it are
identical and free of ``$ref`` (an unchanged part is no change to judge).

:func:`check_compatible` applies it under the registry's compatibility modes,
with the meanings of Confluent's and Apicurio's schema registries.
"""

import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, get_args

from onceonly.hub.kit.jcs import canonical_json
from onceonly.hub.registry import validation
from onceonly.hub.registry.schema_rules import MAX_SCHEMA_DEPTH, pointer, resolve_ref

# The registry's compatibility modes (Confluent's names), spelled here only: the item
# document's ``compatibility`` (registry.schemas) is this type, and what each mode checks
# is read from its name (:data:`MODE_CHECKS`).
Mode = Literal[
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
]
Direction = Literal["backward", "forward"]


class ModeChecks(NamedTuple):
    """What a mode checks: its directions, and whether against every earlier version
    (transitive) or the latest only."""

    directions: frozenset[Direction]
    transitive: bool


def _checks(mode: Mode) -> ModeChecks:
    base, _, transitive = mode.partition("_")
    directions: dict[str, frozenset[Direction]] = {
        "BACKWARD": frozenset({"backward"}),
        "FORWARD": frozenset({"forward"}),
        "FULL": frozenset({"backward", "forward"}),
        "NONE": frozenset(),
    }
    return ModeChecks(directions[base], transitive == "TRANSITIVE")


MODE_CHECKS: dict[Mode, ModeChecks] = {mode: _checks(mode) for mode in get_args(Mode)}

Path = tuple[str, ...]
# Placeholders for the two schemas' names in reasons, filled in by subsumption_problem.
A, B = "\x00A\x00", "\x00B\x00"

ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "$comment",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$schema",
        "$defs",
    }
)
JUDGED = frozenset(
    {
        "$ref",
        "type",
        "enum",
        "const",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "pattern",
        "format",
        "items",
        "properties",
        "required",
        "additionalProperties",
    }
)
# Bounds of one judgement (see _Judge): comparisons nested this deep, $ref hops
# included, and this many pairs of subschemas compared.
MAX_JUDGED_DEPTH = 2 * MAX_SCHEMA_DEPTH
MAX_JUDGED_PAIRS = 20_000
ALL_TYPES = frozenset({"null", "boolean", "object", "array", "string", "number"})
_NUMERIC = frozenset({"integer", "number"})


class CannotJudge(ValueError):
    """A schema uses a construct the checker does not reason about."""

    def __init__(self, construct: str, where: Path) -> None:
        self.construct, self.where = construct, pointer(where)
        super().__init__(f"cannot judge compatibility of {construct!r} at {self.where}")


class Incompatible(ValueError):
    """A new version breaks the item's compatibility mode; the message says where and why."""


@dataclass(frozen=True)
class _Node:
    """A subschema and where it sits in its own document."""

    schema: Any
    path: Path


def _is_annotation(keyword: str) -> bool:
    return keyword in ANNOTATIONS or keyword.startswith("x-")


def _has_ref(schema: Any) -> bool:
    if isinstance(schema, dict):
        return "$ref" in schema or any(_has_ref(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_has_ref(v) for v in schema)
    return False


def _judged_keywords(node: _Node) -> set[str]:
    """The keywords of a (dict) node that constrain, or CannotJudge."""
    keywords = {k for k in node.schema if not _is_annotation(k)}
    unknown = sorted(keywords - JUDGED)
    if unknown:
        raise CannotJudge(unknown[0], node.path)
    return keywords


def _key(value: Any) -> Any:
    """A hashable key with JSON equality (so enum membership is a set lookup)."""
    if isinstance(value, bool) or value is None:
        return ("b", value)
    if isinstance(value, int | float):
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return ("n", int(value))
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, list):
        return ("a", tuple(_key(v) for v in value))
    if isinstance(value, dict):
        return ("o", tuple(sorted((k, _key(v)) for k, v in value.items())))
    return ("?", repr(value))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if math.isfinite(value) and value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _types(schema: dict[str, Any]) -> frozenset[str]:
    declared = schema.get("type")
    if declared is None:
        return ALL_TYPES
    return frozenset([declared] if isinstance(declared, str) else declared)


def _type_allowed(json_type: str, types: frozenset[str]) -> bool:
    return json_type in types or (json_type == "integer" and "number" in types)


@functools.lru_cache(maxsize=1024)
def _leaf_validator(keyword: str, argument: str) -> validation.Validator:
    return validation.compile_schema({keyword: argument})


@dataclass
class _Document:
    """One schema document: resolves its local references."""

    root: Any
    _enums: dict[int, frozenset[Any]] = field(default_factory=dict)
    _canonical: dict[int, bytes | None] = field(default_factory=dict)
    _refs: dict[int, bool] = field(default_factory=dict)

    def canonical(self, schema: Any) -> bytes | None:
        """A subschema's RFC 8785 bytes (JSON equality: ``1`` equals ``1.0``, ``true``
        differs from ``1``), computed once per subschema of this document."""
        key = id(schema)
        if key not in self._canonical:
            try:
                self._canonical[key] = canonical_json(schema)
            except (TypeError, ValueError):
                self._canonical[key] = None
        return self._canonical[key]

    def has_ref(self, schema: Any) -> bool:
        """Whether a subschema holds a ``$ref`` anywhere, computed once per subschema."""
        key = id(schema)
        if key not in self._refs:
            self._refs[key] = _has_ref(schema)
        return self._refs[key]

    def enum_keys(self, values: list[Any]) -> frozenset[Any]:
        """The JSON-equality keys of an enum of this document, computed once."""
        keys = self._enums.get(id(values))
        if keys is None:
            keys = self._enums[id(values)] = frozenset(_key(v) for v in values)
        return keys

    def resolve(self, node: _Node) -> _Node:
        seen: set[Path] = set()
        while isinstance(node.schema, dict) and "$ref" in node.schema:
            if node.path in seen:
                raise CannotJudge("$ref loop", node.path)
            seen.add(node.path)
            others = _judged_keywords(node) - {"$ref"}
            if others:
                raise CannotJudge(f"$ref beside {sorted(others)[0]}", node.path)
            node = self._target(node)
        return node

    def _target(self, node: _Node) -> _Node:
        ref = node.schema["$ref"]
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            raise CannotJudge("non-local $ref", (*node.path, "$ref"))
        found = resolve_ref(self.root, ref)  # the registry's one reading of a $ref
        if found is None:
            raise CannotJudge("unresolvable $ref", (*node.path, "$ref"))
        return _Node(found[1], found[0])

    def child(self, node: _Node, *keys: str) -> _Node:
        """A child schema by keyword path; ``true`` when absent."""
        schema: Any = node.schema
        for key in keys:
            if not isinstance(schema, dict) or key not in schema:
                return _Node(True, (*node.path, *keys))
            schema = schema[key]
        return self.resolve(_Node(schema, (*node.path, *keys)))

    def property(self, node: _Node, name: str) -> _Node:
        """The schema a property's value must meet: its own, or additionalProperties."""
        properties = node.schema.get("properties", {})
        if name in properties:
            return self.child(node, "properties", name)
        return self.child(node, "additionalProperties")


def _is_everything(document: _Document, node: _Node) -> bool:
    return node.schema is True or (isinstance(node.schema, dict) and not _judged_keywords(node))


# --- evaluating one value (enum and const members) -------------------------------------


def satisfies(value: Any, document: _Document, node: _Node) -> bool:
    """Whether ``value`` is valid under ``node`` (the judged subset only)."""
    node = document.resolve(node)
    if isinstance(node.schema, bool):
        return node.schema
    _judged_keywords(node)
    schema = node.schema
    json_type = _json_type(value)
    if not _type_allowed(json_type, _types(schema)):
        return False
    if "enum" in schema and _key(value) not in document.enum_keys(schema["enum"]):
        return False
    if "const" in schema and _key(value) != _key(schema["const"]):
        return False
    if json_type in _NUMERIC:
        return _number_ok(value, schema)
    if json_type == "string":
        return _string_ok(value, schema)
    if json_type == "array":
        return _array_ok(value, document, node)
    if json_type == "object":
        return _object_ok(value, document, node)
    return True


def _number_ok(value: float, schema: dict[str, Any]) -> bool:
    return (
        ("minimum" not in schema or value >= schema["minimum"])
        and ("maximum" not in schema or value <= schema["maximum"])
        and ("exclusiveMinimum" not in schema or value > schema["exclusiveMinimum"])
        and ("exclusiveMaximum" not in schema or value < schema["exclusiveMaximum"])
    )


def _string_ok(value: str, schema: dict[str, Any]) -> bool:
    if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", math.inf):
        return False
    for keyword in ("pattern", "format"):
        if keyword in schema and not _leaf_validator(keyword, schema[keyword]).is_valid(value):
            return False
    return True


def _array_ok(value: list[Any], document: _Document, node: _Node) -> bool:
    schema = node.schema
    if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", math.inf):
        return False
    items = document.child(node, "items")
    return all(satisfies(element, document, items) for element in value)


def _object_ok(value: dict[str, Any], document: _Document, node: _Node) -> bool:
    if any(name not in value for name in node.schema.get("required", [])):
        return False
    return all(
        satisfies(element, document, document.property(node, name))
        for name, element in value.items()
    )


# --- subsumption ------------------------------------------------------------------------


@dataclass
class _Judge:
    """One judgement. Its work is bounded: the written nesting of a schema is limited
    (``schema_rules.MAX_SCHEMA_DEPTH``), but ``$ref`` hops are not, so a legal chain of
    definitions linked through ``properties``, or two recursive structures of coprime
    periods, could take the comparison arbitrarily deep and wide. Past
    :data:`MAX_JUDGED_DEPTH` nested comparisons or :data:`MAX_JUDGED_PAIRS` pairs of
    subschemas it raises :class:`CannotJudge`, as for any construct it cannot judge."""

    a: _Document
    b: _Document
    assumed: set[tuple[Path, Path]] = field(default_factory=set)
    depth: int = 0

    def problem(self, a: _Node, b: _Node, where: Path) -> str | None:
        """Why not every instance valid under ``a`` is valid under ``b`` (None: it is)."""
        a, b = self.a.resolve(a), self.b.resolve(b)
        if a.schema is False or b.schema is True:
            return None
        if (a.path, b.path) in self.assumed:
            return None  # coinduction: a recursive structure, already being judged
        if len(self.assumed) >= MAX_JUDGED_PAIRS:
            raise CannotJudge(f"more than {MAX_JUDGED_PAIRS} pairs of subschemas", where)
        self.assumed.add((a.path, b.path))
        if self._unchanged(a, b):
            return None
        if _is_everything(self.b, b):
            return None
        if b.schema is False:
            return _at(where, f"{B} allows no value here, {A} does")
        if a.schema is True:
            return _at(where, f"{A} allows any value here, {B} constrains it")
        _judged_keywords(a)
        _judged_keywords(b)
        if self.depth >= MAX_JUDGED_DEPTH:
            raise CannotJudge(
                f"nesting deeper than {MAX_JUDGED_DEPTH} levels ($ref followed)", where
            )
        self.depth += 1
        try:
            return self._compare(a, b, where)
        finally:
            self.depth -= 1

    def _unchanged(self, a: _Node, b: _Node) -> bool:
        """The same subschema on both sides, free of ``$ref`` (an unchanged part)."""
        same = self.a.canonical(a.schema)
        return (
            same is not None and same == self.b.canonical(b.schema) and not self.a.has_ref(a.schema)
        )

    def _compare(self, a: _Node, b: _Node, where: Path) -> str | None:
        finite = _finite_values(a.schema)
        if finite is not None:
            return self._values(finite, a, b, where)
        if "enum" in b.schema or "const" in b.schema:
            return _at(where, f"{B} restricts the values to an enum/const list, {A} does not")
        types_a = _types(a.schema)
        types_b = _types(b.schema)
        for json_type in sorted(types_a):
            if not _type_allowed(json_type, types_b):
                return _at(where, f"{A} allows type {json_type!r}, {B} does not")
        return next(self._by_type(types_a, a, b, where), None)

    def _values(self, values: Sequence[Any], a: _Node, b: _Node, where: Path) -> str | None:
        for value in values:
            if satisfies(value, self.a, a) and not satisfies(value, self.b, b):
                return _at(where, f"{B} refuses a value that {A} lists")
        return None

    def _by_type(self, types: frozenset[str], a: _Node, b: _Node, where: Path) -> Iterator[str]:
        checks = []
        if types & _NUMERIC:
            checks.append(_bounds_problem(a.schema, b.schema, where))
        if "string" in types:
            checks.append(_string_problem(a.schema, b.schema, where))
        if "array" in types:
            checks.append(self._array_problem(a, b, where))
        if "object" in types:
            checks.append(self._object_problem(a, b, where))
        yield from (problem for problem in checks if problem is not None)

    def _array_problem(self, a: _Node, b: _Node, where: Path) -> str | None:
        problem = _range_problem(a.schema, b.schema, "minItems", "maxItems", where)
        if problem is not None:
            return problem
        return self.problem(self.a.child(a, "items"), self.b.child(b, "items"), (*where, "items"))

    def _object_problem(self, a: _Node, b: _Node, where: Path) -> str | None:
        required_a = set(a.schema.get("required", []))
        for name in b.schema.get("required", []):
            if name not in required_a:
                return _at(where, f"{B} requires property {name!r}, {A} does not")
        names = set(a.schema.get("properties", {})) | set(b.schema.get("properties", {}))
        for name in sorted(names):
            problem = self.problem(
                self.a.property(a, name), self.b.property(b, name), (*where, "properties", name)
            )
            if problem is not None:
                return problem
        return self.problem(
            self.a.child(a, "additionalProperties"),
            self.b.child(b, "additionalProperties"),
            (*where, "additionalProperties"),
        )


def _at(where: Path, message: str) -> str:
    return f"{pointer(where)}: {message}"


def _finite_values(schema: dict[str, Any]) -> list[Any] | None:
    """The candidate values of a schema that can only hold finitely many, else None."""
    if "enum" in schema or "const" in schema:
        values = list(schema.get("enum", []))
        return [*values, schema["const"]] if "const" in schema else values
    types = _types(schema)
    if types <= {"null", "boolean"}:
        return [v for v in (None, True, False) if _json_type(v) in types]
    return None


def _lower(schema: dict[str, Any]) -> tuple[float, bool] | None:
    """The tightest lower bound as (value, exclusive)."""
    bounds = []
    if "minimum" in schema:
        bounds.append((schema["minimum"], False))
    if "exclusiveMinimum" in schema:
        bounds.append((schema["exclusiveMinimum"], True))
    return max(bounds, default=None)


def _upper(schema: dict[str, Any]) -> tuple[float, bool] | None:
    """The tightest upper bound as (value, exclusive)."""
    bounds = []
    if "maximum" in schema:
        bounds.append((schema["maximum"], False))
    if "exclusiveMaximum" in schema:
        bounds.append((schema["exclusiveMaximum"], True))
    return min(bounds, key=lambda bound: (bound[0], not bound[1]), default=None)


def _bounds_problem(a: dict[str, Any], b: dict[str, Any], where: Path) -> str | None:
    low_a, low_b = _lower(a), _lower(b)
    if low_b is not None and (
        low_a is None or low_a[0] < low_b[0] or (low_a == (low_b[0], False) and low_b[1])
    ):
        return _at(where, f"{B} has a higher lower bound than {A}")
    high_a, high_b = _upper(a), _upper(b)
    if high_b is not None and (
        high_a is None or high_a[0] > high_b[0] or (high_a == (high_b[0], False) and high_b[1])
    ):
        return _at(where, f"{B} has a lower upper bound than {A}")
    return None


def _range_problem(
    a: dict[str, Any], b: dict[str, Any], low: str, high: str, where: Path
) -> str | None:
    if a.get(low, 0) < b.get(low, 0):
        return _at(where, f"{B} has a higher {low} than {A}")
    if a.get(high, math.inf) > b.get(high, math.inf):
        return _at(where, f"{B} has a lower {high} than {A}")
    return None


def _string_problem(a: dict[str, Any], b: dict[str, Any], where: Path) -> str | None:
    problem = _range_problem(a, b, "minLength", "maxLength", where)
    if problem is not None:
        return problem
    for keyword in ("pattern", "format"):
        if keyword in b and (keyword not in a or a[keyword] != b[keyword]):
            return _at(where, f"{B} has a {keyword} that {A} does not have, or another")
    return None


def subsumption_problem(
    a: Any, b: Any, *, names: tuple[str, str] = ("the first schema", "the second schema")
) -> str | None:
    """``None`` if every instance valid under schema ``a`` is valid under ``b``; else why not.

    The reason starts with the JSON pointer and calls the schemas by ``names``.
    Raises :class:`CannotJudge` for a construct outside the judged subset.
    """
    judge = _Judge(_Document(a), _Document(b))
    problem = judge.problem(_Node(a, ()), _Node(b, ()), ())
    if problem is None:
        return None
    return problem.replace(A, names[0]).replace(B, names[1])


def check_compatible(new: Any, earlier: Sequence[Any], mode: Mode) -> None:
    """Raise :class:`Incompatible` unless ``new`` may follow ``earlier`` (oldest first).

    BACKWARD: data valid under the previous version is valid under the new one
    (consumers on the new schema read old data); FORWARD: data valid under the new
    version is valid under the previous one; FULL: both. The ``_TRANSITIVE`` modes
    compare with every earlier version, the others with the latest only; NONE
    checks nothing.
    """
    directions, transitive = MODE_CHECKS[mode]
    compared = list(enumerate(earlier, start=1))
    if not transitive:
        compared = compared[-1:]
    for number, old in reversed(compared):
        old_name = f"version {number}"
        if "backward" in directions:
            problem = subsumption_problem(old, new, names=(old_name, "the new version"))
            _require(problem, f"BACKWARD-compatible with {old_name}", old_name, "the new version")
        if "forward" in directions:
            problem = subsumption_problem(new, old, names=("the new version", old_name))
            _require(problem, f"FORWARD-compatible with {old_name}", "the new version", old_name)


def loosens_compatibility(old: Mode, new: Mode) -> bool:
    """Whether ``new`` leaves out a check that ``old`` makes: one of its directions, or
    the comparison with every earlier version. FULL → BACKWARD → NONE loosens;
    BACKWARD → FORWARD loosens too (backward is no longer checked)."""
    old_directions, old_transitive = MODE_CHECKS[old]
    new_directions, new_transitive = MODE_CHECKS[new]
    if not old_directions <= new_directions:
        return True
    return bool(old_directions) and old_transitive and not new_transitive


def _require(problem: str | None, what: str, source: str, target: str) -> None:
    if problem is not None:
        raise Incompatible(
            f"not {what}: {problem} (data valid under {source} could be invalid under {target})"
        )
