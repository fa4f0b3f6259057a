"""grants.version: the item's version a grant was decided on

A grant names top-level fields; with the version it was decided on, the exchange
also drops what a later version adds inside those fields (a nested personal member,
say). Grants made before keep ``NULL`` and are read as before: their top-level
fields, as the latest version describes them. Those that answer an access request
take the request's version.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 00:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("grants") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE grants SET version = (SELECT r.version FROM access_requests r"
        " WHERE r.id = grants.request_id) WHERE request_id IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("grants") as batch:
        batch.drop_column("version")
