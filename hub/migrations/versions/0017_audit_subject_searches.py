"""audit_subject_searches: each person's subjects searched in the last hour

An auditor's searches of the log by subject are limited per person and hour (decision
0086). The count was kept in each hub process, so that ``onceonly serve --workers N``
and replicas gave a person a budget each; it is now one table that every process
shares: a row per person and subject, from the time it was counted.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_subject_searches",
        sa.Column("person", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("counted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("person", "subject"),
    )
    with op.batch_alter_table("audit_subject_searches", schema=None) as batch_op:
        batch_op.create_index(
            "ix_audit_subject_searches_counted_at", ["counted_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_subject_searches", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_subject_searches_counted_at")
    op.drop_table("audit_subject_searches")
