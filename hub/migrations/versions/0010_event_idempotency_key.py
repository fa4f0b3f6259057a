"""events.idempotency_key and events.audit_index: a retried publish is the same event

An owner's adapter sends an ``Idempotency-Key`` with each publish; the hub keeps it
per publishing department (a unique index: events without a key never collide) with
the index of the event's ``event.publish`` entry, so that a repeat answers with the
first event and its receipt instead of making a second event. Events published
before keep ``NULL`` in both.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("audit_index", sa.BigInteger(), nullable=True))
    op.create_index(
        "uq_events_owner_idempotency_key",
        "events",
        ["owner_id", "idempotency_key"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_events_owner_idempotency_key", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("audit_index")
        batch.drop_column("idempotency_key")
