"""Audit API bodies (DESIGN.md, "Audit log": a contract)."""

from typing import Any

from pydantic import BaseModel

from onceonly.hub.kit.clock import UtcDatetime


class ReceiptOut(BaseModel):
    """Where the request's audit entry stands in the log (docs/audit.md, "Receipts")."""

    index: int
    leaf_hash: str


class EntryOut(BaseModel):
    """One entry: its index and leaf hash for anyone; for a caller entitled to its
    content also the exact leaf bytes (base64) and the decoded entry."""

    index: int
    leaf_hash: str
    leaf: str | None = None
    entry: dict[str, Any] | None = None


class EntryPage(BaseModel):
    entries: list[EntryOut]
    next_cursor: str | None


class ProofOut(BaseModel):
    """A Merkle proof: base64 hashes in RFC 9162 §2.1.3 / §2.1.4 order."""

    hashes: list[str]


class CheckpointOut(BaseModel):
    tree_size: int
    root: str
    note: str
    time: UtcDatetime  # SQLite gives it back without its offset


class CheckpointPage(BaseModel):
    checkpoints: list[CheckpointOut]
    next_since_size: int | None
