"""Pure functions for audit leaves: what an entry is, as bytes and as a hash.

RFC 6962 §2.1: the leaf hash is SHA-256(0x00 ‖ leaf). The leaf is the RFC 8785
canonical JSON of the entry (DESIGN.md, "Audit log").
"""

import base64
import hashlib
from datetime import datetime
from typing import Any

from hub.audit import merkle
from hub.kit.clock import rfc3339_ms
from hub.kit.jcs import canonical_json

ENTRY_VERSION = 1
# The members an entry may carry, in the order DESIGN.md lists them.
ENTRY_FIELDS = (
    "client",
    "person",  # the signed-in person (a staff username, never a citizen) who acted
    "department",
    "action",
    "item",
    "version",
    "subject",
    "purpose",
    "grant",
    "fields",
    "outcome",
    "reason",
    "time",
    "request_id",
    "digest",
    "event",  # the change event an entry is about (publish, delivery, replay)
    "target",  # what an administrative change acted on (e.g. a client id)
)


def build_entry(*, time: datetime, action: str, outcome: str, **fields: Any) -> dict[str, Any]:
    """The entry as a JSON object; members without a value are left out."""
    unknown = set(fields) - set(ENTRY_FIELDS)
    if unknown:
        raise ValueError(f"unknown audit entry fields: {sorted(unknown)}")
    entry: dict[str, Any] = {"v": ENTRY_VERSION, "time": rfc3339_ms(time), "action": action}
    entry["outcome"] = outcome
    entry.update({k: v for k, v in fields.items() if v is not None})
    return entry


def leaf_bytes(entry: dict[str, Any]) -> bytes:
    return canonical_json(entry)


def leaf_hash(leaf: bytes) -> bytes:
    return merkle.hash_leaf(leaf)


def data_digest(data: Any) -> str:
    """``sha256:<hex>`` of the canonical JSON of data returned to a caller."""
    return "sha256:" + hashlib.sha256(canonical_json(data)).hexdigest()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
