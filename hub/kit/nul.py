"""Refuse the NUL character (U+0000) wherever a caller can send one.

PostgreSQL ``text`` columns cannot hold U+0000, and no identifier, name, purpose or
record of the hub ever contains one, so a request that carries it is refused with
400 ``invalid-request`` before anything reads it (it would otherwise fail deep in
the database as a 500). The checks scan bytes, never parsed values, so a body or URL
without a NUL costs one substring search or two.

A JSON text can carry U+0000 only as a raw 0x00 byte (which is not valid JSON in
UTF-8 text; in UTF-16 or UTF-32 text, which the hub does not accept either, every
ASCII character has one) or as the escape ``\\u0000`` (hex digits ``0`` have no
case). ``\\\\u0000`` in the JSON text is an escaped backslash followed by the
letters ``u0000``, not a NUL: an escape counts only when an even number of
backslashes precedes it.
"""

import json
from typing import Any

NUL_DETAIL = "the request contains a NUL character (U+0000), which is never valid here"

_ESCAPE = b"\\u0000"
_BACKSLASH = 0x5C


def url_has_nul(path: str, query_string: bytes) -> bool:
    """Whether the decoded path or the raw query string carries U+0000 (raw or ``%00``)."""
    return "\x00" in path or b"%00" in query_string or b"\x00" in query_string


def body_nul(raw: bytes) -> str | None:
    """``None`` if the JSON text ``raw`` carries no U+0000, else the problem's detail."""
    if b"\x00" in raw:
        return f"{NUL_DETAIL}: the body has a 0x00 byte (JSON bodies are UTF-8 text)"
    if _ESCAPE not in raw or not _has_nul_escape(raw):
        return None
    pointer = _first_nul_pointer(raw)
    return NUL_DETAIL if pointer is None else f"{NUL_DETAIL}: at {pointer or '/'} (JSON pointer)"


def _has_nul_escape(raw: bytes) -> bool:
    """Whether some ``\\u0000`` in ``raw`` is an escape, not an escaped backslash + text."""
    at = raw.find(_ESCAPE)
    while at != -1:
        before = at
        while before > 0 and raw[before - 1] == _BACKSLASH:
            before -= 1
        if (at - before) % 2 == 0:
            return True
        at = raw.find(_ESCAPE, at + 1)
    return False


def _first_nul_pointer(raw: bytes) -> str | None:
    """RFC 6901 pointer of the first string (in document order) that holds U+0000;
    for a member name, the pointer of its object. Only on the refusal path."""
    try:
        document = json.loads(raw, object_pairs_hook=list)
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        node, pointer = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return pointer[:200]
        elif isinstance(node, list) and node and _is_pairs(node):
            for name, _ in node:
                if "\x00" in name:
                    return pointer[:200]
            stack.extend((value, f"{pointer}/{_token(name)}") for name, value in reversed(node))
        elif isinstance(node, list):
            stack.extend((value, f"{pointer}/{i}") for i, value in reversed(list(enumerate(node))))
    return None


def _is_pairs(node: list[Any]) -> bool:
    return isinstance(node[0], tuple)


def _token(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")
