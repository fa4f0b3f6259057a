"""Audit API bodies (DESIGN.md, "Audit log": a contract)."""

from typing import Any

from pydantic import BaseModel, Field

from onceonly.hub.kit.clock import UtcDatetime


class ReceiptOut(BaseModel):
    """Where the request's audit entry stands in the log (docs/audit.md, "Receipts")."""

    index: int
    leaf_hash: str


def _absent(value: object) -> bool:
    return value is None


STORED_OTHERWISE = "(not stored as the hub writes it)"


class IndexedOut(BaseModel):
    """For auditors: the columns the hub's index keeps for an entry beside its subject
    (``indexed_subject``), which the auditors' filters, the departments' pages and the
    reports read instead of the leaf. Each is a copy of the leaf's member of the same
    name (``null`` where the leaf has none), and ``onceonly audit verify --full`` checks
    that it still is (decision 0078). A value not stored as the hub writes it (SQLite
    keeps any type in any column) is shown as "(not stored as the hub writes it)",
    never as the value it reads back as: the filters compare what is stored."""

    time: str  # RFC 3339, UTC, as the hub shows every time
    action: str
    outcome: str
    department: str | None
    client: str | None
    item: str | None


class EntryOut(BaseModel):
    """One entry: its index and leaf hash for anyone; for a caller entitled to its
    content also the exact leaf bytes (base64) and the decoded entry (members left
    out, not null, for a caller who may not read them)."""

    index: int
    leaf_hash: str
    leaf: str | None = Field(default=None, exclude_if=_absent)
    entry: dict[str, Any] | None = Field(default=None, exclude_if=_absent)
    committed_subject: str | None = Field(
        default=None,
        exclude_if=_absent,
        description="For auditors, of an entry whose leaf holds subject_commitment instead"
        " of subject: the pseudonym the hub indexes the entry by, which the commitment"
        " lets them check (decision 0069)",
    )
    indexed_subject: str | None = Field(
        default=None,
        exclude_if=_absent,
        description="For auditors, of every entry the hub indexes by a pseudonym (its subject"
        " or the one it commits to): that pseudonym, which the auditors' search by subject"
        " and the citizen's page read; `onceonly audit verify --full` checks it against the"
        " leaf (decision 0069's follow-up)",
    )
    indexed: IndexedOut | None = Field(
        default=None,
        exclude_if=_absent,
        description="For auditors, of every entry: the other columns the hub indexes it by"
        " (time, action, outcome, department, client, item), which the filters of"
        " /v1/audit/entries and the departments' pages read; `onceonly audit verify --full`"
        " checks each against the leaf (decision 0078)",
    )


class EntryPage(BaseModel):
    entries: list[EntryOut]
    next_cursor: str | None  # null on the last page, never left out


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
