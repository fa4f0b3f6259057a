"""auth: revoked access tokens

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 20:00:00.000000

``revoked_tokens(jti, expires_at)`` keeps the jti of every access token revoked
through RFC 7009 until the token would have expired, so that every replica
refuses it (the exchange checks it within its single query).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jti"),
    )
    with op.batch_alter_table("revoked_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_revoked_tokens_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("revoked_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_revoked_tokens_expires_at")
    op.drop_table("revoked_tokens")
