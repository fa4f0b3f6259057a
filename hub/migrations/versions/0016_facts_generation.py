"""facts_generation: a value that every change to a record query's facts replaces

A record query is admitted on facts from six tables: departments (the owner's adapter),
clients (the caller's standing), items and item_versions (lifecycle, sharing class,
schema), grants, and revoked_tokens. A hub process keeps the facts it read and uses
them again only while ``facts_generation.value`` is what it was when they were read
(docs/decisions/0038). Triggers replace the value with a random one in the
transaction of every change to those tables, whoever makes it: a hub replica, a
command, or SQL typed by hand. Random, not counted: a value put back (a row deleted
and inserted again, the table made again by a downgrade and upgrade, an older copy
restored) must not come back to one that a running hub holds facts for.

On PostgreSQL the row-level triggers are constraint triggers deferred to commit, so
that the value's row lock is taken last in a writing transaction and held only for
its commit (taken at each statement, it could close a lock cycle between two
transactions that change the same rows in different orders); the value is replaced
once per transaction however many rows it changes; TRUNCATE has a statement trigger
of its own. The triggers fire also under ``session_replication_role = replica``
(ENABLE ALWAYS), and the function names its table with the schema it was made in
(a table of the same name on a writer's search path is never bumped instead).
SQLite runs one writer at a time, so its triggers run at each row.

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
_PG_RANDOM = "(random() * 9e18)::bigint"  # 52 random bits, within bigint
_SQLITE_RANDOM = "random()"  # 64 random bits


def upgrade() -> None:
    op.create_table(
        "facts_generation",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    if op.get_bind().dialect.name == "postgresql":
        _upgrade_postgres()
        return
    op.execute(f"INSERT INTO facts_generation (id, value) VALUES (1, {_SQLITE_RANDOM})")
    for table in TABLES:
        for event in ("INSERT", "UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_facts_generation_{event.lower()}"
                f" AFTER {event} ON {table} BEGIN"
                f" UPDATE facts_generation SET value = {_SQLITE_RANDOM} WHERE id = 1; END"
            )


def _upgrade_postgres() -> None:
    schema = op.get_bind().execute(sa.text("SELECT current_schema()")).scalar_one()
    here = '"' + schema.replace('"', '""') + '"'
    op.execute(f"INSERT INTO facts_generation (id, value) VALUES (1, {_PG_RANDOM})")
    op.execute(
        f"CREATE FUNCTION {here}.onceonly_bump_facts_generation() RETURNS trigger"
        f" LANGUAGE plpgsql SET search_path = pg_catalog, {here} AS $$"
        " BEGIN"
        "  IF current_setting('onceonly.facts_bumped', true) = txid_current()::text THEN"
        "   RETURN NULL;"  # this transaction replaced it already
        "  END IF;"
        "  PERFORM set_config('onceonly.facts_bumped', txid_current()::text, true);"
        f"  UPDATE {here}.facts_generation SET value = {_PG_RANDOM} WHERE id = 1;"
        "  RETURN NULL;"
        " END $$"
    )
    for table in TABLES:
        op.execute(
            f"CREATE CONSTRAINT TRIGGER {table}_facts_generation"
            f" AFTER INSERT OR UPDATE OR DELETE ON {table}"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
            f" EXECUTE FUNCTION {here}.onceonly_bump_facts_generation()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_facts_generation_truncate AFTER TRUNCATE ON {table}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION {here}.onceonly_bump_facts_generation()"
        )
        op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_facts_generation")
        op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_facts_generation_truncate")


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
