"""Registry tables: departments, their clients, data items, item versions, and changes
that wait for a second person."""

from datetime import datetime
from typing import Any
from uuid import uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from onceonly.hub.kit.columns import created_at


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


class RegistryChange(SQLModel, table=True):
    """A change of an item that one steward may not make alone (docs/registry.md, "Two
    people for dangerous changes"): it waits here until an administrator approves or
    refuses it. ``changes`` maps each member to ``{"from": ..., "to": ...}``.
    ``status``: pending → approved | refused (each final)."""

    __tablename__ = "registry_changes"
    __table_args__ = (
        # At most one pending change per item, kept by the database itself.
        sa.Index(
            "uq_registry_changes_pending",
            "item_id",
            unique=True,
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        ),
    )

    id: str = Field(default_factory=lambda: uuid4().hex, primary_key=True, max_length=32)
    item_id: str = Field(foreign_key="items.id", max_length=128)
    changes: dict[str, Any] = Field(sa_type=sa.JSON)
    status: str = Field(default="pending", max_length=16)
    requested_by: str = Field(max_length=64)
    requested_at: datetime = created_at()
    decided_by: str | None = Field(default=None, max_length=64)
    decided_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    reason: str | None = Field(default=None, max_length=2000)


class FactsGeneration(SQLModel, table=True):
    """One row whose ``value`` changes, in the same transaction, with every change to
    what a record query's admission reads (departments, clients, items, item versions,
    grants, revoked tokens): database triggers bump it (migration 0016), so a change
    made by any replica, command or hand-written SQL counts. A hub process keeps the
    facts it read with the value they were read at, and uses them again only while
    the value is unchanged (docs/decisions/0038)."""

    __tablename__ = "facts_generation"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})  # only 1
    value: int = Field(default=0, sa_type=sa.BigInteger)
