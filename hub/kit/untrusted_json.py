"""JSON the hub did not write (request bodies, owners' answers, the hub's answers to
the command line, files given to it): duplicate keys and nesting deeper than a limit
are refused, never a RecursionError. No web framework here: the command line uses it.
"""

import json
import re
import sys
from typing import Any


class _DuplicateKey(ValueError):
    pass


# A key named in a refusal: a member's name as the hub's bodies have them. Any other
# (digits, which an identifier would hold) is not repeated back.
_KEY_NAME = re.compile(r"[A-Za-z_][A-Za-z_.-]{0,63}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            named = f"duplicate key {key!r}" if _KEY_NAME.fullmatch(key) else "a duplicate key"
            raise _DuplicateKey(named)
        result[key] = value
    return result


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(node, dict):
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, level + 1) for child in node)
    return deepest


# One decoder for every call: json.loads with a hook builds a new one each time.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates)


def _text(raw: bytes | str) -> str:
    """``raw`` as json.loads reads it: bytes in the encoding RFC 8259 allows (a UTF-8
    byte order mark accepted, as json.loads accepts it), a str without one."""
    if isinstance(raw, str):
        if raw.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", raw, 0)
        return raw
    return raw.decode(json.detect_encoding(raw), "surrogatepass")


def _openings(raw: bytes | str) -> int:
    """How many ``[`` and ``{`` the text holds: a bound on its nesting (brackets inside
    strings only raise it), so that most texts need no walk."""
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{")
    return raw.count(b"[") + raw.count(b"{")


_NOT_UNICODE = "the text is not valid UTF-8 (RFC 8259 §8.1)"
_TOO_MANY_DIGITS = f"a number has more than {sys.get_int_max_str_digits()} digits"


class UnsafeJson(ValueError):
    """Not JSON, or JSON refused: nested deeper than allowed, or with a duplicate key."""


class JsonTooDeep(UnsafeJson):
    pass


def load_json(raw: bytes | str, *, max_depth: int) -> Any:
    """Parse JSON that the hub did not write: duplicate keys and nesting deeper than
    ``max_depth`` are refused. Raise :class:`UnsafeJson` (a ValueError), or
    :class:`JsonTooDeep` for nesting."""
    try:
        value = _DECODER.decode(_text(raw))
    except RecursionError:  # the C parser recurses: far too deep to finish
        raise JsonTooDeep(f"nested deeper than {max_depth} levels") from None
    except (json.JSONDecodeError, _DuplicateKey) as error:  # where, never the text itself
        raise UnsafeJson(f"not valid JSON: {str(error)[:200]}") from None
    except UnicodeDecodeError:  # Python's own words name its codec and the byte
        raise UnsafeJson(f"not valid JSON: {_NOT_UNICODE}") from None
    except ValueError:  # an integer past Python's digit limit; its words name sys's limit
        raise UnsafeJson(f"not valid JSON: {_TOO_MANY_DIGITS}") from None
    if _openings(raw) >= max_depth and _depth(value) > max_depth:
        raise JsonTooDeep(f"nested deeper than {max_depth} levels")
    return value
