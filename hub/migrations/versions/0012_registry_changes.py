"""registry_changes: changes of an item that wait for a second person

Opening the sharing class of an item with personal fields, or loosening its
compatibility mode, is no longer one steward's decision: the change waits in this
table until an administrator (not the person who asked) approves or refuses it
(docs/registry.md, "Two people for dangerous changes"). At most one change per item
waits at a time (a partial unique index).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table(
        "registry_changes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("item_id", sa.String(length=128), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=2000), nullable=True),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_registry_changes_pending",
        "registry_changes",
        ["item_id"],
        unique=True,
        postgresql_where=_PENDING,
        sqlite_where=_PENDING,
    )


def downgrade() -> None:
    op.drop_index("uq_registry_changes_pending", table_name="registry_changes")
    op.drop_table("registry_changes")
