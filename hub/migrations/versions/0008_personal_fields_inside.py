"""item_versions: a field with a personal part inside counts as personal

Recomputes ``personal_fields`` of every stored version with the rule of
``onceonly.hub.registry.schema_rules.personal_fields``: a top-level field is personal when it,
or anything inside it (nested properties, array items, local ``$ref`` targets), is
marked ``"x-personal": true``. Before, only fields marked at the top level counted,
so a request naming no fields could be granted a field with personal data inside.
The rule only ever adds fields, so downgrading keeps the wider lists (safe).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 23:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from onceonly.hub.registry.schema_rules import personal_fields

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_versions = sa.table(
    "item_versions",
    sa.column("item_id", sa.String),
    sa.column("version", sa.Integer),
    sa.column("schema", sa.JSON),
    sa.column("personal_fields", sa.JSON),
)


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_versions.c.item_id, _versions.c.version, _versions.c["schema"])
    ).all()
    for item_id, version, schema in rows:
        conn.execute(
            _versions.update()
            .where(_versions.c.item_id == item_id, _versions.c.version == version)
            .values(personal_fields=personal_fields(schema))
        )


def downgrade() -> None:
    """Nothing to undo: the wider lists stay (narrowing them again would be unsafe)."""
