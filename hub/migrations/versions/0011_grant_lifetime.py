"""Grants end: every active grant without ``valid_until`` (or ending later than the
default maximum) now ends 365 days after the upgrade

From this version on a grant lasts at most ``grant_max_days`` (365 by default) from
its approval (docs/access.md, "How long a grant lasts"). Grants made before could
have no end at all; they get the default maximum from the moment of the upgrade, so
none of them ends suddenly. Nothing is undone on downgrade: the earlier hub reads a
grant with an end as it always did.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 14:00:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_MAX_DAYS = 365

grants = sa.table(
    "grants",
    sa.column("status", sa.String()),
    sa.column("valid_until", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    latest = datetime.now(UTC) + timedelta(days=DEFAULT_MAX_DAYS)
    op.execute(
        grants.update()
        .where(
            grants.c.status == "active",
            sa.or_(grants.c.valid_until.is_(None), grants.c.valid_until > latest),
        )
        .values(valid_until=latest)
    )


def downgrade() -> None:
    pass
