"""client_disablements: when an administrator last disabled a client

A client is disabled with ``POST /v1/admin/clients/{id}/disable`` and enabled again
with ``.../enable``. Access tokens are judged by their client's standing at each
request, so a client is enabled again only once every token it held when it was
disabled has expired; this table remembers when that was (docs/protocol.md, 2.8).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "client_disablements",
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["clients.client_id"]),
        sa.PrimaryKeyConstraint("client_id"),
    )


def downgrade() -> None:
    op.drop_table("client_disablements")
