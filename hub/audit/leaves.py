"""Pure functions for audit leaves: what an entry is, as bytes and as a hash.

RFC 6962 §2.1: the leaf hash is SHA-256(0x00 ‖ leaf). The leaf is the RFC 8785
canonical JSON of the entry (DESIGN.md, "Audit log").

Entries of version 2 (``"v": 2``) are private in content and public in shape:

- every entry carries ``salt``, 128 random bits, so that its leaf hash says nothing
  about its content however guessable that content is (a leaf hash of an unsalted
  entry could be tested against every candidate entry);
- a record delivered to a consumer is committed to as ``commitment``, an HMAC-SHA-256
  of its canonical JSON under a key made for that one exchange, which the hub hands to
  the consumer with the receipt and does not keep: only a holder of the key can test
  a record against the commitment (see :func:`commitment`);
- an entry that a department may read although the department was not entitled to
  the subject at that moment (a record query refused before the hub decided to call
  the owner, an event delivery refused because the subscriber no longer may be told)
  carries ``subject_commitment`` instead of ``subject`` (decision 0069): a department
  cannot compute pseudonyms, so it cannot test one against the commitment, and a
  refused request no longer turns an identifier into its pseudonym for whoever sent
  it. The row still indexes the pseudonym (see :func:`indexed_subject`).

Entries of version 1 (before salts) stay as they were written: the log is append-only.
"""

import base64
import hashlib
import hmac
import json
import os
from datetime import datetime
from typing import Any

from onceonly.hub.audit import merkle
from onceonly.hub.kit import base64url
from onceonly.hub.kit.clock import as_utc, rfc3339_ms
from onceonly.hub.kit.jcs import canonical_json

ENTRY_VERSION = 2
SALT_BYTES = 16  # 128 bits
COMMITMENT_KEY_BYTES = 32
COMMITMENT_PREFIX = "hmac-sha256:"
SUBJECT_COMMITMENT_PREFIX = "sha256:"
# Not a member: the pseudonym a ``subject_commitment`` commits to, carried with the
# entry to its row's indexed ``subject`` column and never into the leaf.
_SEALED_SUBJECT = "_sealed_subject"
# The members an entry may carry, in the order DESIGN.md lists them.
ENTRY_FIELDS = (
    "client",
    "person",  # the signed-in person (a staff username, never a citizen) who acted
    "department",
    "owner",  # the department whose adapter the hub asked for the record
    "action",
    "item",
    "version",
    "subject",
    "subject_commitment",  # instead of ``subject`` where the reader was not entitled to it
    "purpose",
    "grant",
    "fields",
    "outcome",
    "reason",
    "time",
    "request_id",
    "client_request_id",  # an authenticated client's X-Request-Id, if well-formed (0070)
    "commitment",
    "query",  # what an auditor asked: every filter of a query or an export
    "event",  # the change event an entry is about (publish, delivery, replay)
    "target",  # what an administrative change acted on (e.g. a client id)
    "owner_ms",  # how long the owner's adapter took to answer (or fail), whole milliseconds
)
_KNOWN_FIELDS = frozenset(ENTRY_FIELDS)


def build_entry(
    *,
    time: datetime,
    action: str,
    outcome: str,
    sealed_subject: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The entry as a JSON object, salted; members without a value are left out.

    ``sealed_subject``: a pseudonym that the leaf commits to as ``subject_commitment``
    without showing it, unless the entry names its ``subject`` anyway (which wins)."""
    unknown = fields.keys() - _KNOWN_FIELDS
    if unknown:
        raise ValueError(f"unknown audit entry fields: {sorted(unknown)}")
    entry: dict[str, Any] = {"v": ENTRY_VERSION, "time": rfc3339_ms(time), "action": action}
    entry["outcome"] = outcome
    entry.update({k: v for k, v in fields.items() if v is not None})
    entry["salt"] = base64url.encode(os.urandom(SALT_BYTES))
    if sealed_subject is not None and "subject" not in entry:
        entry["subject_commitment"] = subject_commitment(entry["salt"], sealed_subject)
        entry[_SEALED_SUBJECT] = sealed_subject
    return entry


def leaf_bytes(entry: dict[str, Any]) -> bytes:
    """The leaf: the entry's members as RFC 8785 canonical JSON (a sealed subject is no
    member)."""
    if _SEALED_SUBJECT in entry:
        entry = {name: value for name, value in entry.items() if name != _SEALED_SUBJECT}
    return canonical_json(entry)


def indexed_subject(entry: dict[str, Any]) -> str | None:
    """The pseudonym the entry's row indexes for the auditors' search by subject: its
    ``subject``, or the one its ``subject_commitment`` commits to."""
    subject = entry.get("subject", entry.get(_SEALED_SUBJECT))
    return None if subject is None else str(subject)


INDEXED_MEMBERS = ("action", "outcome", "department", "client", "item")
"""The members an entry's row copies into index columns beside its time and subject
(onceonly.hub.audit.service._values; decision 0078)."""


def unlike_leaf(leaf: bytes, row: Any) -> list[str]:
    """The index columns of an entry's ``row`` (``time``, ``subject`` and
    :data:`INDEXED_MEMBERS`) that are not what its ``leaf`` gives: the auditors'
    filters, the departments' pages, the citizen's page and the report's roll-ups read
    them, not the leaf. A leaf that is no entry gives nothing to compare (the tree's
    check names what is wrong with it)."""
    try:  # a leaf is UTF-8 (RFC 8785): json.loads would first guess its encoding
        entry = json.loads(leaf.decode("utf-8"))
        time = as_utc(datetime.fromisoformat(entry["time"]))
    except (ValueError, TypeError, KeyError):  # UnicodeDecodeError included
        return []
    if not isinstance(entry, dict):
        return []
    unlike = [] if as_utc(row.time) == time else ["time"]
    unlike += [name for name in INDEXED_MEMBERS if getattr(row, name) != entry.get(name)]
    if "subject_commitment" in entry:
        committed = isinstance(row.subject, str) and commits_to(entry, row.subject)
        return unlike if committed else [*unlike, "subject"]
    return unlike if row.subject == entry.get("subject") else [*unlike, "subject"]


def subject_commitment(salt: str, pseudonym: str) -> str:
    """``sha256:<base64url>``: SHA-256 of the entry's salt (its 16 bytes, decoded from
    base64url) followed by the UTF-8 bytes of the pseudonym (64 hex digits). Only who
    can compute pseudonyms (the hub's key) can test a person against it; the salt makes
    the same person's commitments differ from entry to entry."""
    digest = hashlib.sha256(base64url.decode(salt) + pseudonym.encode()).digest()
    return SUBJECT_COMMITMENT_PREFIX + base64url.encode(digest)


def commits_to(entry: dict[str, Any], pseudonym: str) -> bool:
    """Whether ``entry``'s ``subject_commitment`` is that of ``pseudonym``."""
    stated = entry.get("subject_commitment")
    salt = entry.get("salt")
    if not isinstance(stated, str) or not isinstance(salt, str):
        return False
    try:
        expected = subject_commitment(salt, pseudonym)
    except ValueError:  # a salt that is no base64url
        return False
    return hmac.compare_digest(stated, expected)


def leaf_hash(leaf: bytes) -> bytes:
    return merkle.hash_leaf(leaf)


def new_commitment_key() -> bytes:
    """A fresh secret for one exchange: given to the consumer, never stored by the hub."""
    return os.urandom(COMMITMENT_KEY_BYTES)


def commitment(key: bytes, data: Any) -> str:
    """``hmac-sha256:<base64url>``: HMAC-SHA-256 (RFC 2104) under ``key`` of the RFC 8785
    canonical JSON of ``data``. Without ``key`` nobody can test a guess of ``data``."""
    mac = hmac.digest(key, canonical_json(data), "sha256")  # one-shot: OpenSSL in C
    return COMMITMENT_PREFIX + base64url.encode(mac)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
