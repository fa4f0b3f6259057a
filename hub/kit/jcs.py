"""RFC 8785 JSON Canonicalization Scheme.

Audit leaves are the canonical bytes of an entry, so two implementations that
agree on RFC 8785 agree on every leaf hash.
"""

from typing import Any

import rfc8785


def canonical_json(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of ``value``."""
    return rfc8785.dumps(value)
