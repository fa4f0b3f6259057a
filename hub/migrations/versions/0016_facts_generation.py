"""facts_generation: a counter that every change to a record query's facts bumps

A record query is admitted on facts from six tables: departments (the owner's adapter),
clients (the caller's standing), items and item_versions (lifecycle, sharing class,
schema), grants, and revoked_tokens. A hub process keeps the facts it read and uses
them again only while ``facts_generation.value`` is what it was when they were read
(docs/decisions/0038). Triggers bump the value in the transaction of every change to
those tables, whoever makes it: a hub replica, a command, or SQL typed by hand.

On PostgreSQL the row-level triggers are constraint triggers deferred to commit, so
that the counter's row lock is taken last in a writing transaction and held only for
its commit (taken at each statement, it could close a lock cycle between two
transactions that change the same rows in different orders); TRUNCATE has a
statement-level trigger of its own. SQLite runs one writer at a time, so its
triggers run at each row.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("departments", "clients", "items", "item_versions", "grants", "revoked_tokens")
_BUMP = "UPDATE facts_generation SET value = value + 1 WHERE id = 1"


def upgrade() -> None:
    op.create_table(
        "facts_generation",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO facts_generation (id, value) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION onceonly_bump_facts_generation() RETURNS trigger"
            f" LANGUAGE plpgsql AS $$ BEGIN {_BUMP}; RETURN NULL; END $$"
        )
        for table in TABLES:
            op.execute(
                f"CREATE CONSTRAINT TRIGGER {table}_facts_generation"
                f" AFTER INSERT OR UPDATE OR DELETE ON {table}"
                " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
                " EXECUTE FUNCTION onceonly_bump_facts_generation()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_facts_generation_truncate AFTER TRUNCATE ON {table}"
                " FOR EACH STATEMENT EXECUTE FUNCTION onceonly_bump_facts_generation()"
            )
        return
    for table in TABLES:
        for event in ("INSERT", "UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_facts_generation_{event.lower()}"
                f" AFTER {event} ON {table} BEGIN {_BUMP}; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER {table}_facts_generation_truncate ON {table}")
            op.execute(f"DROP TRIGGER {table}_facts_generation ON {table}")
        op.execute("DROP FUNCTION onceonly_bump_facts_generation()")
    else:
        for table in TABLES:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER {table}_facts_generation_{event}")
    op.drop_table("facts_generation")
