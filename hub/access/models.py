"""Grants and access requests: what a consumer department may read, for which purpose,
until when, and how it came to be allowed."""

from datetime import datetime
from uuid import uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from onceonly.hub.kit.columns import created_at


class Grant(SQLModel, table=True):
    __tablename__ = "grants"
    __table_args__ = (sa.Index("ix_grants_lookup", "consumer_id", "item_id", "purpose"),)

    id: str = Field(default_factory=lambda: uuid4().hex, primary_key=True, max_length=32)
    consumer_id: str = Field(foreign_key="departments.id", max_length=64)
    item_id: str = Field(foreign_key="items.id", max_length=128)
    purpose: str = Field(max_length=64)
    legal_basis: str = Field(default="", max_length=2000)
    fields: list[str] | None = Field(default=None, sa_type=sa.JSON)
    valid_from: datetime = Field(sa_type=sa.DateTime(timezone=True))
    valid_until: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    status: str = Field(default="active", max_length=16)
    revoked_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    created_at: datetime = created_at()
    # The access request this grant answers (None: made with the break-glass token).
    request_id: str | None = Field(default=None, max_length=32)
    revoked_by: str | None = Field(default=None, max_length=64)
    revoke_reason: str | None = Field(default=None, max_length=2000)
    # The item's version the grant was decided on (None: granted before versions were
    # recorded). A later version's new members, nested ones too, are never delivered.
    version: int | None = Field(default=None)


class AccessRequest(SQLModel, table=True):
    """A consumer department's request to read an item for a purpose.

    ``status``: pending → approved | refused | withdrawn (each final). ``fields`` is
    what was asked for (None: every field of ``version``); ``granted_fields`` and
    ``granted_until`` what the owner allowed.
    """

    __tablename__ = "access_requests"
    __table_args__ = (
        sa.Index("ix_access_requests_owner_status", "owner_id", "status"),
        sa.Index("ix_access_requests_consumer_status", "consumer_id", "status"),
        # At most one pending request per consumer, item and purpose, kept by the
        # database itself (the workflow checks first, to answer with the existing id).
        sa.Index(
            "uq_access_requests_pending",
            "consumer_id",
            "item_id",
            "purpose",
            unique=True,
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        ),
    )

    id: str = Field(default_factory=lambda: uuid4().hex, primary_key=True, max_length=32)
    consumer_id: str = Field(foreign_key="departments.id", max_length=64)
    owner_id: str = Field(foreign_key="departments.id", max_length=64)
    item_id: str = Field(foreign_key="items.id", max_length=128)
    version: int
    purpose: str = Field(max_length=64)
    purpose_text: str = Field(default="", max_length=2000)
    legal_basis: str = Field(max_length=2000)
    fields: list[str] | None = Field(default=None, sa_type=sa.JSON)
    valid_from: datetime = Field(sa_type=sa.DateTime(timezone=True))
    valid_until: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    status: str = Field(default="pending", max_length=16)
    requested_by: str = Field(max_length=64)
    requested_at: datetime = created_at()
    answer_due: datetime = Field(sa_type=sa.DateTime(timezone=True))
    decided_by: str | None = Field(default=None, max_length=64)
    decided_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    reason: str | None = Field(default=None, max_length=2000)
    granted_fields: list[str] | None = Field(default=None, sa_type=sa.JSON)
    granted_until: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    grant_id: str | None = Field(default=None, max_length=32)
