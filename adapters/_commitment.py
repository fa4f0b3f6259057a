"""Keyed commitments to records: evidence of what was delivered that only a key holder
can open (docs/audit.md, "Receipts").

The hub's audit entry of a record query commits to the delivered record as
``hmac-sha256:<base64url>``: HMAC-SHA-256 under a key made for that one exchange of the
record's RFC 8785 canonical JSON. The hub gives the key to the consumer with the
receipt and keeps none; an owner's adapter commits to what it served the same way,
under a key of its own. Whoever holds a key and the record can show what was handed
over; nobody else can test a guess against the log.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

import rfc8785

from . import base64url

__all__ = ["commit", "new_key", "opens"]

_PREFIX = "hmac-sha256:"


def new_key() -> str:
    """A fresh 256-bit key, unpadded base64url."""
    return base64url.encode(os.urandom(32))


def commit(key: str, record: Any) -> str:
    """``hmac-sha256:<base64url>`` of ``record``'s canonical JSON under ``key``: unpadded
    base64url, as the hub's receipts carry it (ValueError for anything else)."""
    mac = hmac.new(_key_bytes(key), rfc8785.dumps(record), hashlib.sha256).digest()
    return _PREFIX + base64url.encode(mac)


def opens(commitment: str, *, key: str, record: Any) -> bool:
    """Whether ``commitment`` is the commitment to ``record`` under ``key``."""
    try:
        return hmac.compare_digest(commit(key, record), commitment)
    except ValueError:
        return False


def _key_bytes(key: str) -> bytes:
    try:
        return base64url.decode(key)
    except ValueError as error:
        raise ValueError("a commitment key is base64url") from error
