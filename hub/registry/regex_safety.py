"""Whether a schema's regular expression is safe to publish. Pure, no I/O.

The hub itself matches patterns with a linear-time engine (the Rust ``regex``
crate inside jsonschema-rs), but the schemas are published: departments validate
records with backtracking engines (Python's ``re``, ECMA-262 engines), where a
pattern such as ``(a+)+$`` takes exponential time on a short hostile string. So
the registry refuses, conservatively, every pattern that it cannot show to be
free of catastrophic backtracking, by a static walk over Python's own parse tree
(``re._parser``, stable in Python 3.11+). It refuses:

- patterns longer than :data:`MAX_PATTERN_LENGTH` characters, or with a counted
  repetition above :data:`MAX_REPEAT_COUNT`;
- patterns that Python's ``re`` does not compile;
- syntax that ECMA-262 reads differently or not at all: named groups ``(?P<n>)``,
  inline flags ``(?i)``, comments ``(?#)``, atomic groups ``(?>)``, possessive
  quantifiers ``a*+``, conditionals ``(?(1)a|b)``, ``\\A`` and ``\\Z``;
- backreferences (``\\1``): matching with them is NP-hard;
- a quantifier that repeats more than once (``*``, ``+``, ``{2,}``, ``{3}``...)
  around anything that contains another quantifier: ``(a+)+``, ``(a?)*``,
  ``([0-9]{2})*``;
- a quantifier that repeats more than once around an alternation whose
  branches can begin with the same character, or where a branch can be empty:
  ``(a|a)*``, ``(a|ab)*``, ``(a|)+``, and ``(\\w|\\d)+``, ``([ab]|[bc])*``, which
  Python's parser merges into one character class (so they are read from the
  pattern's text too); ``(cat|dog)*`` is fine;
- two large quantifiers (unbounded, or above :data:`LARGE_REPEAT`) in one
  sequence that can consume the same characters, unless a mandatory element
  between them cannot be consumed by the first: ``\\d+\\d+``, ``.*a.*``,
  ``[a-z]+x?[a-z]+`` are refused; ``[a-z]+\\.[a-z]+`` is fine.

Character classes are over-approximated (``\\d``, ``\\w``, ``\\s`` include all
non-ASCII characters), which can only make the check stricter.
"""

import importlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

_parser: Any = importlib.import_module("re._parser")  # no type stubs for the private module

MAX_PATTERN_LENGTH = 1000
MAX_REPEAT_COUNT = 1000
LARGE_REPEAT = 64
_MAX_CODE_POINT = 0x10FFFF
_UNBOUNDED: int = int(_parser.MAXREPEAT)
_DEFAULT_FLAGS = re.UNICODE  # what a str pattern gets without inline flags


class UnsafePattern(ValueError):
    """The pattern is refused; the message says why, without the JSON pointer."""


Ranges = tuple[tuple[int, int], ...]
ALL: Ranges = ((0, _MAX_CODE_POINT),)
_NON_ASCII: Ranges = ((0x80, _MAX_CODE_POINT),)
_CATEGORY_ASCII: dict[str, Ranges] = {
    "CATEGORY_DIGIT": ((0x30, 0x39),),
    "CATEGORY_WORD": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
    "CATEGORY_SPACE": ((0x09, 0x0D), (0x1C, 0x20)),
}


def _normalize(ranges: Iterable[tuple[int, int]]) -> Ranges:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return tuple(merged)


def _complement(ranges: Ranges) -> Ranges:
    result, start = [], 0
    for low, high in _normalize(ranges):
        if low > start:
            result.append((start, low - 1))
        start = high + 1
    if start <= _MAX_CODE_POINT:
        result.append((start, _MAX_CODE_POINT))
    return tuple(result)


def _overlap(a: Ranges, b: Ranges) -> bool:
    return any(lo1 <= hi2 and lo2 <= hi1 for lo1, hi1 in a for lo2, hi2 in b)


def _category(name: str) -> Ranges:
    """A superset of a category's characters: its ASCII part, plus all of non-ASCII."""
    negated = name.startswith("CATEGORY_NOT_")
    base = _CATEGORY_ASCII.get(name.replace("CATEGORY_NOT_", "CATEGORY_"))
    if base is None:  # line-break categories and the like: anything
        return ALL
    ascii_part = _complement(base + _NON_ASCII) if negated else base
    return _normalize(ascii_part + _NON_ASCII)


def _class_ranges(items: Sequence[tuple[Any, Any]]) -> Ranges:
    """The characters a ``[...]`` class can match (a superset)."""
    ranges: list[tuple[int, int]] = []
    negate = False
    for op, value in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            ranges.append((value, value))
        elif name == "RANGE":
            ranges.append(value)
        elif name == "CATEGORY":
            ranges.extend(_category(str(value)))
        else:
            return ALL
    # a negated class with categories inside cannot be complemented from a superset
    if negate:
        has_category = any(str(op) == "CATEGORY" for op, _ in items)
        return ALL if has_category else _complement(tuple(ranges))
    return _normalize(ranges)


@dataclass(frozen=True)
class _First:
    """What a piece of pattern can start with, and whether it can match nothing."""

    chars: Ranges
    nullable: bool


def _first(sequence: Sequence[tuple[Any, Any]]) -> _First:
    chars: list[tuple[int, int]] = []
    for op, value in sequence:
        element = _first_of(str(op), value)
        chars.extend(element.chars)
        if not element.nullable:
            return _First(_normalize(chars), nullable=False)
    return _First(_normalize(chars), nullable=True)


def _first_of(name: str, value: Any) -> _First:
    if name == "LITERAL":
        return _First(((value, value),), nullable=False)
    if name == "NOT_LITERAL":
        return _First(_complement(((value, value),)), nullable=False)
    if name == "IN":
        return _First(_class_ranges(value), nullable=False)
    if name in ("AT", "ASSERT", "ASSERT_NOT"):
        return _First((), nullable=True)
    if name == "SUBPATTERN":
        return _first(value[3])
    if name == "BRANCH":
        branches = [_first(b) for b in value[1]]
        chars = _normalize(r for b in branches for r in b.chars)
        return _First(chars, nullable=any(b.nullable for b in branches))
    if name in ("MAX_REPEAT", "MIN_REPEAT"):
        body = _first(value[2])
        return _First(body.chars, nullable=body.nullable or value[0] == 0)
    return _First(ALL, nullable=True)  # ANY and anything unforeseen: assume the worst


def _consumed(sequence: Sequence[tuple[Any, Any]]) -> Ranges:
    """Every character that a piece of pattern can consume anywhere (a superset)."""
    chars: list[tuple[int, int]] = []
    for op, value in sequence:
        name = str(op)
        if name in ("LITERAL", "NOT_LITERAL", "IN"):
            chars.extend(_first_of(name, value).chars)
        elif name == "SUBPATTERN":
            chars.extend(_consumed(value[3]))
        elif name == "BRANCH":
            chars.extend(r for b in value[1] for r in _consumed(b))
        elif name in ("MAX_REPEAT", "MIN_REPEAT"):
            chars.extend(_consumed(value[2]))
        elif name not in ("AT", "ASSERT", "ASSERT_NOT"):
            return ALL
    return _normalize(chars)


_REFUSED_NODES = {
    "GROUPREF": "backreferences are not allowed (matching them is NP-hard)",
    "GROUPREF_EXISTS": "conditionals (?(...)...) are not ECMA-262",
    "ATOMIC_GROUP": "atomic groups (?>...) are not ECMA-262",
    "POSSESSIVE_REPEAT": "possessive quantifiers (*+, ++, ?+) are not ECMA-262",
}
_REFUSED_ANCHORS = {"AT_BEGINNING_STRING": "\\A", "AT_END_STRING": "\\Z"}


def _children(name: str, value: Any) -> list[Sequence[tuple[Any, Any]]]:
    if name == "SUBPATTERN":
        return [value[3]]
    if name == "BRANCH":
        return list(value[1])
    if name in ("MAX_REPEAT", "MIN_REPEAT"):
        return [value[2]]
    if name in ("ASSERT", "ASSERT_NOT"):
        return [value[1]]
    return []


def _contains_repeat(sequence: Sequence[tuple[Any, Any]]) -> bool:
    for op, value in sequence:
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT"):
            return True
        if any(_contains_repeat(child) for child in _children(name, value)):
            return True
    return False


def _check_alternation_under_repeat(sequence: Sequence[tuple[Any, Any]]) -> None:
    for op, value in sequence:
        name = str(op)
        if name == "BRANCH":
            _check_branches_disjoint(value[1])
        for child in _children(name, value):
            _check_alternation_under_repeat(child)


def _check_branches_disjoint(branches: Sequence[Sequence[tuple[Any, Any]]]) -> None:
    firsts = [_first(b) for b in branches]
    if any(f.nullable for f in firsts):
        raise UnsafePattern("a repeated alternation has a branch that can match nothing")
    for i, a in enumerate(firsts):
        for b in firsts[i + 1 :]:
            if _overlap(a.chars, b.chars):
                raise UnsafePattern(
                    "a repeated alternation has branches that can begin with the same"
                    " character (catastrophic backtracking)"
                )


def _check_repeat(value: Any) -> None:
    low, high, body = value
    if (high != _UNBOUNDED and high > MAX_REPEAT_COUNT) or low > MAX_REPEAT_COUNT:
        raise UnsafePattern(f"a counted repetition above {MAX_REPEAT_COUNT}")
    if high <= 1:
        return
    if _contains_repeat(body):
        raise UnsafePattern(
            "a quantifier repeats something that contains another quantifier,"
            " like (a+)+ (catastrophic backtracking)"
        )
    _check_alternation_under_repeat(body)


def _is_large(name: str, value: Any) -> bool:
    return name in ("MAX_REPEAT", "MIN_REPEAT") and (
        value[1] == _UNBOUNDED or value[1] > LARGE_REPEAT
    )


def _check_adjacent(sequence: Sequence[tuple[Any, Any]], open_chars: Ranges) -> Ranges:
    """Walk a sequence; ``open_chars`` may still be taken by an earlier large quantifier."""
    for op, value in sequence:
        name = str(op)
        if _is_large(name, value):
            consumed = _consumed(value[2])
            if _overlap(open_chars, consumed):
                raise UnsafePattern(
                    "two unbounded quantifiers in a row can match the same characters,"
                    " like \\d+\\d+ or .*x.* (polynomial backtracking)"
                )
            open_chars = _normalize(open_chars + consumed)
        elif name == "SUBPATTERN":
            open_chars = _check_adjacent(value[3], open_chars)
        elif name == "BRANCH":
            ends = [_check_adjacent(branch, open_chars) for branch in value[1]]
            open_chars = _normalize(r for end in ends for r in end)
        elif name in ("MAX_REPEAT", "MIN_REPEAT"):
            # A small repeat: what its body's own large quantifiers leave open counts
            # too (helper-147: (?:a+)?a+ and (?:\d+){1}\d+ passed). A body repeated
            # twice or more has no quantifier (_check_repeat), so one pass is enough;
            # an optional body may also not run, leaving what was open before it.
            low, _, body = value
            end = _check_adjacent(body, open_chars)
            open_chars = _normalize(open_chars + end) if low == 0 else end
        else:
            first = _first_of(name, value)
            if not first.nullable and not _overlap(open_chars, first.chars):
                open_chars = ()  # a mandatory separator the earlier quantifier cannot take
    return open_chars


def _check_tree(sequence: Sequence[tuple[Any, Any]]) -> None:
    for op, value in sequence:
        name = str(op)
        if name in _REFUSED_NODES:
            raise UnsafePattern(_REFUSED_NODES[name])
        if name == "AT" and str(value) in _REFUSED_ANCHORS:
            raise UnsafePattern(f"{_REFUSED_ANCHORS[str(value)]} is not ECMA-262; use ^ and $")
        if name == "SUBPATTERN" and (value[1] or value[2]):
            raise UnsafePattern("inline flags like (?i) are not ECMA-262")
        if name in ("MAX_REPEAT", "MIN_REPEAT"):
            _check_repeat(value)
        for child in _children(name, value):
            _check_tree(child)


# --- alternations as written ------------------------------------------------------------
#
# Python's parser rewrites an alternation whose branches are all single characters into
# one character class: ``(\w|\d)`` becomes ``[\w\d]``, ``([ab]|[bc])`` and ``(a|b|a)``
# become ``[abc]`` and ``[ab]`` (duplicates dropped), so the tree no longer shows the
# choice that a backtracking engine makes between overlapping branches (``^(\w|\d)+$``
# on 28 digits and a '!' takes ~25 s in V8). So the alternations are also read from the
# pattern's own text, and their branches checked as the tree's are.

_OPENERS = re.compile(r"\(\?(?::|=|!|<=|<!)|\(")  # the group kinds check_tree lets through
_QUANTIFIER = re.compile(r"[*+?]|\{([0-9]*)(,?)([0-9]*)\}")


@dataclass
class _Group:
    """A group as written: where its content starts, its top-level ``|`` and whether a
    quantifier repeats it more than once."""

    parent: "_Group | None"
    start: int
    bars: list[int]
    repeated: bool = False

    def under_repeat(self) -> bool:
        group: _Group | None = self
        while group is not None:
            if group.repeated:
                return True
            group = group.parent
        return False


def _class_end(pattern: str, at: int) -> int:
    """The index after the ``[...]`` that starts at ``at`` (a ``]`` first is a member)."""
    i = at + 1
    if pattern.startswith("^", i):
        i += 1
    if pattern.startswith("]", i):
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i + 1


def _repeats(pattern: str, at: int) -> bool:
    """Whether a quantifier at ``at`` allows more than one repetition."""
    found = _QUANTIFIER.match(pattern, at)
    if found is None or found.group() == "?":
        return False
    if found.group() in ("*", "+"):
        return True
    low, comma, high = found.groups()
    if not comma:
        return bool(low) and int(low) > 1
    return not high or int(high) > 1


def _written_alternations(pattern: str) -> list[list[str]]:
    """The branches, as written, of every alternation inside a repeated group."""
    group = _Group(None, 0, [])
    closed: list[tuple[_Group, int]] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":
            i = _class_end(pattern, i)
            continue
        if char == "(":
            opener = _OPENERS.match(pattern, i)
            assert opener is not None  # "(" itself always matches
            group = _Group(group, opener.end(), [])
            i = group.start
            continue
        if char == "|":
            group.bars.append(i)
        elif char == ")" and group.parent is not None:
            group.repeated = _repeats(pattern, i + 1)
            closed.append((group, i))
            group = group.parent
        i += 1
    return [
        [pattern[a + 1 : b] for a, b in zip([g.start - 1, *g.bars], [*g.bars, end], strict=True)]
        for g, end in closed
        if g.bars and g.under_repeat()
    ]


def _check_written_alternations(pattern: str) -> None:
    """Each repeated alternation, its branches parsed one by one (so none is merged into
    a class) and their common prefix taken out as Python's parser does, must have
    disjoint branches that cannot match nothing: :func:`_check_branches_disjoint`."""
    for written in _written_alternations(pattern):
        try:
            branches = [list(_parser.parse(branch)) for branch in written]
        except (re.error, RecursionError, OverflowError):
            raise UnsafePattern("a repeated alternation that cannot be analysed") from None
        while all(branches) and all(b[0] == branches[0][0] for b in branches[1:]):
            branches = [b[1:] for b in branches]
        _check_branches_disjoint(branches)


def _parse(pattern: str) -> Any:
    try:
        tree = _parser.parse(pattern)
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as error:
        raise UnsafePattern(f"does not compile: {str(error)[:200]}") from None
    return tree


def _check_class_openings(pattern: str) -> None:
    """Refuse ``[]`` and ``[^]`` written first in a class: ECMA-262 reads them as an
    empty class (matches nothing) and any character, Python's and the hub's engine as
    a class holding ``]`` (helper-158: the hub kept a member that an ECMA-262 reader of
    the published schema believes closed out)."""
    escaped = in_class = False
    for index, char in enumerate(pattern):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            rest = pattern[index + 1 : index + 3]
            if rest.startswith("]") or rest == "^]":
                raise UnsafePattern(
                    "a class that starts with ] ([] or [^]) is read differently by"
                    " ECMA-262; escape it: [\\]...]"
                )
            in_class = True


def check_pattern(pattern: str) -> None:
    """Raise :class:`UnsafePattern` unless ``pattern`` is safe to publish."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise UnsafePattern(f"longer than {MAX_PATTERN_LENGTH} characters")
    if "(?#" in pattern:
        raise UnsafePattern("comments (?#...) are not ECMA-262")
    _check_class_openings(pattern)
    tree = _parse(pattern)
    if tree.state.groupdict:
        raise UnsafePattern("named groups (?P<name>...) are not ECMA-262")
    if tree.state.flags & ~_DEFAULT_FLAGS:
        raise UnsafePattern("inline flags like (?i) are not ECMA-262")
    _check_tree(list(tree))
    _check_written_alternations(pattern)
    _check_adjacent(list(tree), ())
