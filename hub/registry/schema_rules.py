"""What the registry accepts as a data item's JSON Schema. Pure checks, no I/O.

Each refusal names the JSON pointer (RFC 6901) of the offending part. The checks, in
order: size; Draft 2020-12 only; the root describes an object; then, over every
subschema (the walk knows which keywords hold schemas, so data inside ``enum``,
``const``, ``default`` or ``examples`` is never read as a schema):

- nesting deeper than :data:`MAX_SCHEMA_DEPTH` subschemas;
- only the keywords of :data:`ALLOWED_KEYWORDS`, annotations starting with ``x-``,
  and ``x-personal`` only as a boolean; ``$id``, ``$anchor`` and the dynamic
  keywords are refused (they would let a ``$ref`` leave the document);
- ``$ref`` only to a subschema of the same document (``#`` or ``#/...``): nothing
  is ever fetched, and a reference that points at nothing, or at data, is refused;
- no loop through ``$ref`` that makes no progress into the instance, such as
  ``{"$defs": {"a": {"$ref": "#/$defs/a"}}}`` (a loop through ``properties`` or
  ``items`` is a recursive structure, and fine);
- ``format`` only from :data:`ALLOWED_FORMATS` (the ones the hub checks);
- every ``pattern`` and ``patternProperties`` key safe (see :mod:`regex_safety`);

and last the metaschema check (``jsonschema``, the reference implementation).
"""

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from onceonly.hub.registry.exceptions import InvalidSchema
from onceonly.hub.registry.regex_safety import UnsafePattern, check_pattern

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
MAX_SCHEMA_BYTES = 64 * 1024
MAX_SCHEMA_DEPTH = 32

Path = tuple[str, ...]

# Keywords whose value is one subschema, a list of them, or a map of name → subschema.
SCHEMA_KEYWORDS = frozenset(
    {"not", "if", "then", "else", "additionalProperties", "propertyNames", "items", "contains"}
)
SCHEMA_LIST_KEYWORDS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
SCHEMA_MAP_KEYWORDS = frozenset({"properties", "patternProperties", "$defs", "dependentSchemas"})
# Keywords that apply a subschema to the same instance: a $ref loop through only
# these never gets anywhere.
IN_PLACE_KEYWORDS = frozenset(
    {"not", "if", "then", "else", "allOf", "anyOf", "oneOf", "dependentSchemas"}
)
ALLOWED_KEYWORDS = (
    SCHEMA_KEYWORDS
    | SCHEMA_LIST_KEYWORDS
    | SCHEMA_MAP_KEYWORDS
    | {
        "$schema", "$ref", "$comment",
        "type", "enum", "const", "multipleOf",
        "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
        "maxLength", "minLength", "pattern", "format",
        "maxItems", "minItems", "uniqueItems", "maxContains", "minContains",
        "maxProperties", "minProperties", "required", "dependentRequired",
        "title", "description", "default", "deprecated", "readOnly", "writeOnly", "examples",
        "x-personal",
    }
)  # fmt: skip
ALLOWED_FORMATS = frozenset(
    {
        "date",
        "date-time",
        "time",
        "duration",
        "email",
        "hostname",
        "ipv4",
        "ipv6",
        "uri",
        "uri-reference",
        "uuid",
    }
)
_IDENTITY_KEYWORDS = ("$id", "$anchor", "$dynamicRef", "$dynamicAnchor", "$vocabulary")


def pointer(path: tuple[str | int, ...]) -> str:
    """The RFC 6901 JSON pointer of a path (``/`` for the root, as people read it)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path) or "/"


def _refuse(path: tuple[str | int, ...], message: str) -> InvalidSchema:
    return InvalidSchema(f"{pointer(path)}: {message}")


def subschemas(node: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every subschema of ``node`` with its path, the root first; stops at the depth limit."""
    yield path, node
    if not isinstance(node, dict) or len(path) > 2 * MAX_SCHEMA_DEPTH:
        return
    for keyword, value in node.items():
        yield from _children(keyword, value, (*path, keyword))


def _children(keyword: str, value: Any, path: Path) -> Iterator[tuple[Path, Any]]:
    if keyword in SCHEMA_KEYWORDS:
        yield from subschemas(value, path)
    elif keyword in SCHEMA_LIST_KEYWORDS and isinstance(value, list):
        for index, child in enumerate(value):
            yield from subschemas(child, (*path, str(index)))
    elif keyword in SCHEMA_MAP_KEYWORDS and isinstance(value, dict):
        for name, child in value.items():
            yield from subschemas(child, (*path, name))


def _depth(path: Path) -> int:
    """How many subschemas deep a path is (a map or list keyword adds one step)."""
    depth, skip = 0, False
    for token in path:
        if skip:
            skip = False
            continue
        depth += 1
        skip = token in SCHEMA_LIST_KEYWORDS or token in SCHEMA_MAP_KEYWORDS
    return depth


def check_text(value: Any, where: str) -> None:
    """Raise InvalidSchema unless every string of ``value`` (keys too) is text: a lone
    surrogate (``"\\ud800"``, which JSON's escapes can spell) has no UTF-8 form, so no
    canonical form to fingerprint, and the validator refuses it (helper-147: a 500)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidSchema(
            f"{where}: holds a lone surrogate (an escape such as \\ud800 without its pair),"
            " which is not text"
        ) from None


def check_schema(schema: dict[str, Any]) -> None:
    """Raise InvalidSchema (with a JSON pointer) unless the registry can accept ``schema``."""
    check_text(schema, "/")
    if len(json.dumps(schema).encode()) > MAX_SCHEMA_BYTES:
        raise InvalidSchema(f"/: the schema is larger than {MAX_SCHEMA_BYTES} bytes")
    if schema.get("$schema") != DRAFT_2020_12:
        raise InvalidSchema(f"/$schema: must be {DRAFT_2020_12} (Draft 2020-12 only)")
    if schema.get("type") != "object":
        raise InvalidSchema(
            '/type: a data item\'s schema must describe an object ("type": "object")'
        )
    locations = dict(subschemas(schema))
    for path, node in locations.items():
        if _depth(path) > MAX_SCHEMA_DEPTH:
            raise _refuse(path, f"nested deeper than {MAX_SCHEMA_DEPTH} levels")
        if isinstance(node, dict):
            _check_node(node, path, locations)
    _check_ref_loops(locations)
    _check_marks_are_read(schema, locations)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        raise _refuse(tuple(error.absolute_path), error.message[:300]) from None


def _check_node(node: dict[str, Any], path: Path, locations: dict[Path, Any]) -> None:
    _check_keywords(node, path)
    if "$ref" in node:
        ref_target(node["$ref"], path, locations)
    personal = node.get("x-personal")
    if personal is not None and not isinstance(personal, bool):
        raise _refuse((*path, "x-personal"), "must be true or false")
    format_ = node.get("format")
    if format_ is not None and format_ not in ALLOWED_FORMATS:
        raise _refuse(
            (*path, "format"),
            f"format {str(format_)[:40]!r} is not one the hub checks"
            f" (allowed: {', '.join(sorted(ALLOWED_FORMATS))})",
        )
    _check_patterns(node, path)


def _check_keywords(node: dict[str, Any], path: Path) -> None:
    if any(keyword in node for keyword in _IDENTITY_KEYWORDS):
        raise _refuse(path, "$id, $anchor, $dynamicRef and $vocabulary are not allowed")
    for keyword in node:
        if keyword not in ALLOWED_KEYWORDS and not keyword.startswith("x-"):
            raise _refuse(
                (*path, keyword),
                f"keyword {keyword[:40]!r} is not allowed (unknown, a typo, or unsupported)",
            )
    if "$schema" in node and path:
        raise _refuse((*path, "$schema"), "$schema is allowed only at the root")


def _check_patterns(node: dict[str, Any], path: Path) -> None:
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        _check_one_pattern(pattern, (*path, "pattern"))
    pattern_properties = node.get("patternProperties")
    if isinstance(pattern_properties, dict):
        for key in pattern_properties:
            _check_one_pattern(key, (*path, "patternProperties", key))


def _check_one_pattern(pattern: str, path: Path) -> None:
    try:
        check_pattern(pattern)
    except UnsafePattern as error:
        raise _refuse(path, f"regular expression refused: {error}") from None


# RFC 3986 §3.5: the characters a URI fragment may hold (pchar, "/" and "?"), with
# percent-encodings; anything else is no URI reference (jsonschema-rs refuses it too).
_FRAGMENT = re.compile(r"#(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*")
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")  # RFC 6901 §4: no leading zeros


def ref_tokens(ref: Any) -> Path | None:
    """The reference tokens of the JSON pointer a local ``$ref`` names, or None when it
    names none (not a string, not ``#`` or ``#/...``, not a URI fragment).

    RFC 6901 §6: a URI fragment is first percent-decoded (RFC 3986 §2.1, UTF-8), which
    gives the JSON pointer; the pointer is then split at ``/`` and each token unescaped
    (``~1`` → ``/``, then ``~0`` → ``~``). So ``#/$defs/a%25`` names ``a%`` and
    ``#/$defs/a%2Fb`` the member ``b`` of ``a``, as every validator reads them. The one
    function through which the registry resolves references (:func:`resolve_ref`), so
    that the rules, the compatibility checker, personal fields and projection can never
    read a reference differently."""
    if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
        return None
    if not _FRAGMENT.fullmatch(ref):
        return None
    try:
        decoded = unquote(ref[1:], errors="strict")
    except UnicodeDecodeError:
        return None
    if not decoded:
        return ()
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in decoded[1:].split("/"))


def resolve_ref(root: Any, ref: Any) -> tuple[Path, Any] | None:
    """Where a local ``$ref`` points in the document ``root`` (its path and the value
    there), or None when it names nothing in it (see :func:`ref_tokens`)."""
    tokens = ref_tokens(ref)
    if tokens is None:
        return None
    target: Any = root
    for token in tokens:
        if isinstance(target, dict) and token in target:
            target = target[token]
        elif (
            isinstance(target, list) and _ARRAY_INDEX.fullmatch(token) and int(token) < len(target)
        ):
            target = target[int(token)]
        else:
            return None
    return tokens, target


def ref_target(ref: Any, path: Path, locations: dict[Path, Any]) -> Path:
    """The path of the subschema a local ``$ref`` names, or InvalidSchema."""
    where = (*path, "$ref")
    if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
        raise _refuse(where, "only local references (# or #/...) are allowed; nothing is fetched")
    found = resolve_ref(locations[()], ref)
    if found is None or found[0] not in locations:
        raise _refuse(where, f"{ref[:100]!r} does not point at a subschema of this document")
    return found[0]


def _in_place(path: Path, locations: dict[Path, Any]) -> Iterator[tuple[Path, Path]]:
    """(where, target) for each subschema that applies to the same instance as ``path``."""
    node = locations[path]
    if not isinstance(node, dict):
        return
    if "$ref" in node:
        yield (*path, "$ref"), ref_target(node["$ref"], path, locations)
    for keyword in IN_PLACE_KEYWORDS & node.keys():
        value = node[keyword]
        if isinstance(value, list):
            children = [(*path, keyword, str(i)) for i in range(len(value))]
        elif isinstance(value, dict) and keyword in SCHEMA_MAP_KEYWORDS:
            children = [(*path, keyword, name) for name in value]
        else:
            children = [(*path, keyword)]
        yield from ((child, child) for child in children if child in locations)


def _check_ref_loops(locations: dict[Path, Any]) -> None:
    """Iterative depth-first search for a cycle of in-place applications (a ``$ref`` loop)."""
    done: set[Path] = set()
    for start in locations:
        if start in done:
            continue
        active = {start}
        stack = [(start, _in_place(start, locations))]
        while stack:
            path, edges = stack[-1]
            step = next(edges, None)
            if step is None:
                stack.pop()
                active.discard(path)
                done.add(path)
                continue
            where, target = step
            if target in active:
                raise _refuse(where, "loops through $ref without ever reaching into the data")
            if target not in done:
                active.add(target)
                stack.append((target, _in_place(target, locations)))


def personal_fields(schema: dict[str, Any]) -> list[str]:
    """Top-level properties that hold personal data: marked ``"x-personal": true``
    themselves, or holding a marked part anywhere inside (nested properties, array
    items, local ``$ref`` targets). Grants allow top-level fields, so a field with one
    personal part inside is personal as a whole. ``schema`` has passed
    :func:`check_schema` (references are local and resolvable)."""
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        return []
    locations = dict(subschemas(schema))
    return sorted(name for name in properties if _holds_personal(("properties", name), locations))


def _holds_personal(start: Path, locations: dict[Path, Any]) -> bool:
    """Whether the subschema at ``start``, or one it reaches, is marked ``x-personal``."""
    return any(
        isinstance(locations.get(path), dict) and locations[path].get("x-personal") is True
        for path in _reached(start, locations)
    )


def _reached(start: Path, locations: dict[Path, Any]) -> set[Path]:
    """The paths of the subschema at ``start`` and of every one inside it or that a local
    ``$ref`` among them leads to."""
    reached: set[Path] = set()
    seen: set[Path] = set()
    stack = [start]
    while stack:
        path = stack.pop()
        if path in seen or path not in locations:
            continue
        seen.add(path)
        for inner, node in subschemas(locations[path], path):
            reached.add(inner)
            if isinstance(node, dict) and "$ref" in node:
                stack.append(ref_target(node["$ref"], inner, locations))
    return reached


def _check_marks_are_read(schema: dict[str, Any], locations: dict[Path, Any]) -> None:
    """An ``x-personal`` mark must be one that :func:`personal_fields` reads: on a root
    property or inside one (directly or through a ``$ref``). Elsewhere (a root
    ``allOf``, ``$ref`` or ``patternProperties``, a ``$defs`` entry no property uses)
    it would mark nothing, and the item would read as holding no personal data (a
    hostile review of decision 0059: one steward opened such an item alone)."""
    properties = schema.get("properties")
    names = properties if isinstance(properties, dict) else {}
    read: set[Path] = set()
    for name in names:
        read |= _reached(("properties", name), locations)
    for path, node in locations.items():
        if isinstance(node, dict) and node.get("x-personal") is True and path not in read:
            raise _refuse(
                (*path, "x-personal"),
                "marks no field: put x-personal on a property of the root's properties"
                " (or inside one); grants and the two-person rule read it only there",
            )
