"""The audit log table: one row per leaf, dense indexes from 0.

The leaf bytes are the contract (RFC 8785 canonical JSON); the other columns are
copies of leaf fields kept only so that auditors' queries can use indexes.
"""

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entries"
    __table_args__ = (
        sa.Index("ix_audit_subject", "subject", "idx"),
        sa.Index("ix_audit_department", "department", "idx"),
        sa.Index("ix_audit_item", "item", "idx"),
        sa.Index("ix_audit_action", "action", "idx"),
    )

    idx: int = Field(
        sa_column=sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False)
    )
    leaf: bytes = Field(sa_type=sa.LargeBinary)
    leaf_hash: bytes = Field(sa_type=sa.LargeBinary)
    time: datetime = Field(sa_type=sa.DateTime(timezone=True), index=True)
    action: str = Field(max_length=64)
    outcome: str = Field(max_length=16)
    department: str | None = Field(default=None, max_length=64)
    client: str | None = Field(default=None, max_length=128)
    item: str | None = Field(default=None, max_length=128)
    subject: str | None = Field(default=None, max_length=64)


class AuditSubjectSearch(SQLModel, table=True):
    """A subject a person searched the log by, counted against their hourly budget
    (decision 0086): one row per person and subject, from the time it was counted;
    rows older than an hour count for nothing and are deleted at the next count. In
    the database, so that every process and replica of a hub counts the same budget."""

    __tablename__ = "audit_subject_searches"

    person: str = Field(primary_key=True, max_length=64)
    subject: str = Field(primary_key=True, max_length=64)  # the pseudonym
    counted_at: datetime = Field(sa_type=sa.DateTime(timezone=True), index=True)


class AuditNode(SQLModel, table=True):
    """The hash of a perfect subtree of the log (RFC 9162 §2.1.1), for ``level`` ≥ 1.

    Node ``(level, idx)`` covers leaves ``[idx * 2**level, (idx + 1) * 2**level)``;
    level 0 is ``audit_entries.leaf_hash``. Written in the transaction that appends
    the leaf completing it, never changed.
    """

    __tablename__ = "audit_nodes"

    level: int = Field(
        sa_column=sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False)
    )
    idx: int = Field(
        sa_column=sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False)
    )
    hash: bytes = Field(sa_type=sa.LargeBinary)


class AuditCheckpoint(SQLModel, table=True):
    """A signed checkpoint (C2SP tlog-checkpoint): one per tree size, the first one wins."""

    __tablename__ = "audit_checkpoints"

    tree_size: int = Field(
        sa_column=sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False)
    )
    root: bytes = Field(sa_type=sa.LargeBinary)
    note: str = Field(sa_type=sa.Text)
    time: datetime = Field(sa_type=sa.DateTime(timezone=True))
