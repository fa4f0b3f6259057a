"""Registry tables: departments, their clients, data items and item versions."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from hub.kit.columns import created_at


class Department(SQLModel, table=True):
    __tablename__ = "departments"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    description: str = Field(default="", max_length=2000)
    adapter_url: str | None = Field(default=None, max_length=500)
    created_at: datetime = created_at()


class Client(SQLModel, table=True):
    """A department's system credential: a client id and its public keys (JWKS)."""

    __tablename__ = "clients"

    client_id: str = Field(primary_key=True, max_length=128)
    department_id: str = Field(foreign_key="departments.id", index=True, max_length=64)
    jwks: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    status: str = Field(default="active", max_length=16)
    created_at: datetime = created_at()


class Item(SQLModel, table=True):
    """A kind of record that can be shared; exactly one owner department."""

    __tablename__ = "items"

    id: str = Field(primary_key=True, max_length=128)
    title: str = Field(max_length=200)
    description: str = Field(default="", max_length=4000)
    owner_id: str = Field(foreign_key="departments.id", index=True, max_length=64)
    sharing_class: str = Field(max_length=16)
    classification: str = Field(max_length=32)
    legal_basis_text: str = Field(default="", max_length=2000)
    legal_basis_reference: str = Field(default="", max_length=500)
    retention: str = Field(default="", max_length=32)
    tags: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    compatibility: str = Field(default="BACKWARD", max_length=32)
    lifecycle: str = Field(default="active", max_length=16)
    # When the item was deprecated: the exchange's Deprecation header (RFC 9745) says so.
    deprecated_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    latest_version: int = Field(default=1)
    created_at: datetime = created_at()


class ItemVersion(SQLModel, table=True):
    """One JSON Schema (Draft 2020-12) version of an item; versions never change."""

    __tablename__ = "item_versions"

    item_id: str = Field(foreign_key="items.id", primary_key=True, max_length=128)
    version: int = Field(primary_key=True)
    schema_: dict[str, Any] = Field(sa_column=sa.Column("schema", sa.JSON, nullable=False))
    fingerprint: str = Field(max_length=64)
    personal_fields: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    created_at: datetime = created_at()
