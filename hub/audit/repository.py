"""All SQL of the audit log."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col, select

from hub.audit.models import AuditEntry

_table = AuditEntry.__table__  # type: ignore[attr-defined]


async def lock_for_append(conn: AsyncConnection) -> None:
    """Serialize appenders across processes sharing one PostgreSQL (SQLite locks itself)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(6962)"))


async def next_index(conn: AsyncConnection) -> int:
    result = await conn.execute(sa.select(sa.func.max(_table.c.idx)))
    last = result.scalar_one_or_none()
    return 0 if last is None else int(last) + 1


async def insert_rows(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    await conn.execute(sa.insert(_table), list(rows))


async def get_entry(session: AsyncSession, index: int) -> AuditEntry | None:
    return await session.get(AuditEntry, index)


@dataclass(frozen=True)
class EntryFilter:
    subject: str | None = None
    department: str | None = None
    item: str | None = None
    action: str | None = None
    outcome: str | None = None


async def find_entries(
    session: AsyncSession, *, where: EntryFilter, after: int | None, limit: int
) -> list[AuditEntry]:
    query = select(AuditEntry)
    for column in ("subject", "department", "item", "action", "outcome"):
        value = getattr(where, column)
        if value is not None:
            query = query.where(getattr(AuditEntry, column) == value)
    if after is not None:
        query = query.where(col(AuditEntry.idx) > after)
    query = query.order_by(col(AuditEntry.idx)).limit(limit)
    return list((await session.execute(query)).scalars())
