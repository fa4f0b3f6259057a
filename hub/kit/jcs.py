"""RFC 8785 JSON Canonicalization Scheme.

Audit leaves are the canonical bytes of an entry, so two implementations that
agree on RFC 8785 agree on every leaf hash.

For the values audit entries hold (objects with ASCII member names, arrays, strings,
integers within ±(2**53 - 1), true, false, null), RFC 8785 is exactly what the
standard library's C encoder writes with sorted keys, no whitespace and no ASCII
escaping:

- §3.2.3: members sorted by the UTF-16 code units of their names; for ASCII names
  that is Python's string order.
- §3.2.2.2: strings as they are, except ``"`` and ``\\``, and the control characters
  below U+0020 as ``\\b \\t \\n \\f \\r`` or ``\\u00xx`` in lower-case hex: the escapes
  ``json.dumps(..., ensure_ascii=False)`` writes.
- §3.2.2.3: an integer of at most 53 bits is printed by ECMAScript as its decimal
  digits, as ``int.__repr__`` prints it.

Anything else (a float, a larger integer, a non-ASCII member name, a type JSON has
no name for) goes to the ``rfc8785`` package, which implements the whole RFC.
tests/hub/kit/test_jcs.py proves the two byte-equal.
"""

import json
from typing import Any

import rfc8785

_SAFE_INTEGER = 2**53 - 1  # RFC 8785 §3.2.2.3, ECMAScript's Number.MAX_SAFE_INTEGER
_encode = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode


def canonical_json(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of ``value``."""
    if _plain(value):
        try:
            return _encode(value).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: rfc8785 says what is wrong
            pass
    return rfc8785.dumps(value)


# More nodes than any audit entry holds: past it, rfc8785 decides (and a value that
# contains itself, which only code can build, fails there instead of looping here).
_MAX_NODES = 100_000


def _plain(value: Any) -> bool:
    """Whether ``value`` holds only the types for which the fast encoding is RFC 8785."""
    pending = [value]
    seen = 0
    while pending:
        seen += 1
        if seen > _MAX_NODES:
            return False
        node = pending.pop()
        kind = type(node)
        if kind is str or node is None or kind is bool:
            continue
        if kind is int:
            if -_SAFE_INTEGER <= node <= _SAFE_INTEGER:
                continue
            return False
        if kind is dict:
            for key, member in node.items():
                if type(key) is not str or not key.isascii():
                    return False
                pending.append(member)
            continue
        if kind is list:
            pending.extend(node)
            continue
        return False
    return True
