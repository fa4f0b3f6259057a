"""access_requests: at most one pending request per consumer, item and purpose

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 22:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_index(
        "uq_access_requests_pending",
        "access_requests",
        ["consumer_id", "item_id", "purpose"],
        unique=True,
        postgresql_where=_PENDING,
        sqlite_where=_PENDING,
    )


def downgrade() -> None:
    op.drop_index("uq_access_requests_pending", table_name="access_requests")
