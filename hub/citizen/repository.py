"""All SQL of the citizen view: a subject's successful record accesses."""

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from onceonly.hub.audit.models import AuditEntry
from onceonly.hub.registry.models import Department, Item

_entries = AuditEntry.__table__  # type: ignore[attr-defined]
_departments = Department.__table__  # type: ignore[attr-defined]
_items = Item.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class AccessRow:
    index: int
    time: datetime
    department: str
    department_name: str | None
    item: str
    item_title: str | None
    leaf: bytes


async def accesses(session: AsyncSession, *, pseudonym: str, limit: int) -> list[AccessRow]:
    """Newest first; uses the (subject, idx) index."""
    query = (
        sa.select(
            _entries.c.idx.label("index"),
            _entries.c.time,
            _entries.c.department,
            _departments.c.name.label("department_name"),
            _entries.c.item,
            _items.c.title.label("item_title"),
            _entries.c.leaf,
        )
        .outerjoin(_departments, _departments.c.id == _entries.c.department)
        .outerjoin(_items, _items.c.id == _entries.c.item)
        .where(
            _entries.c.subject == pseudonym,
            _entries.c.action == "record.query",
            _entries.c.outcome == "ok",
        )
        .order_by(_entries.c.idx.desc())
        .limit(limit)
    )
    return [AccessRow(**row._asdict()) for row in (await session.execute(query)).all()]
