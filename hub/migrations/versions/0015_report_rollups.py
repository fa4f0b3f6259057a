"""report roll-ups: the efficiency report's sums over the audit log's record queries

The report (docs/efficiency.md) reads these instead of the log: per period (month,
quarter, year), the record queries by item, consumer, purpose and outcome, the owners'
response times by whole millisecond, and the distinct records served. The roll-up adds
the log's entries ``[0, report_cursor.next_index)``; starting from an empty cursor it
adds the whole existing log, so the report covers entries written before this upgrade.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "report_cursor",
        sa.Column("name", _text(32), nullable=False),
        sa.Column("next_index", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "report_exchanges",
        sa.Column("period", _text(8), nullable=False),
        sa.Column("item", _text(128), nullable=False),
        sa.Column("consumer", _text(64), nullable=False),
        sa.Column("purpose", _text(64), nullable=False),
        sa.Column("outcome", _text(16), nullable=False),
        sa.Column("reason", _text(64), nullable=False),
        sa.Column("reached", sa.Boolean(), nullable=False),
        sa.Column("queries", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "period", "item", "consumer", "purpose", "outcome", "reason", "reached"
        ),
    )
    op.create_table(
        "report_owner_times",
        sa.Column("period", _text(8), nullable=False),
        sa.Column("item", _text(128), nullable=False),
        sa.Column("ms", sa.Integer(), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("period", "item", "ms"),
    )
    op.create_table(
        "report_records",
        sa.Column("period", _text(8), nullable=False),
        sa.Column("item", _text(128), nullable=False),
        sa.Column("subject", _text(64), nullable=False),
        sa.Column("uses", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("period", "item", "subject"),
    )


def downgrade() -> None:
    op.drop_table("report_records")
    op.drop_table("report_owner_times")
    op.drop_table("report_exchanges")
    op.drop_table("report_cursor")
