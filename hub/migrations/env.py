"""Alembic environment: the hub's tables, on a sync connection handed in by onceonly.hub.migrate."""

from alembic import context
from sqlmodel import SQLModel

import onceonly.hub.models  # noqa: F401  (registers every table on SQLModel.metadata)

target_metadata = SQLModel.metadata


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through `onceonly migrate` (onceonly.hub.migrate)")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
