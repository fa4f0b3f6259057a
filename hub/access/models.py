"""Grants: what a consumer department may read, for which purpose, until when."""

from datetime import datetime
from uuid import uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from hub.kit.columns import created_at


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
