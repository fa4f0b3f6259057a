"""All SQL of grants."""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from hub.access.models import Grant
from hub.registry.models import Item


def _active(now: datetime) -> list[sa.ColumnElement[bool]]:
    return [
        Grant.status == "active",  # type: ignore[list-item]
        Grant.valid_from <= now,  # type: ignore[list-item,operator]
        sa.or_(Grant.valid_until.is_(None), Grant.valid_until > now),  # type: ignore[union-attr,operator]
    ]


async def active_grant(
    session: AsyncSession, *, consumer: str, item: str, purpose: str, now: datetime
) -> Grant | None:
    query = (
        sa.select(Grant)
        .where(Grant.consumer_id == consumer, Grant.item_id == item, Grant.purpose == purpose)  # type: ignore[arg-type]
        .where(*_active(now))
        .order_by(Grant.created_at)  # type: ignore[arg-type]
        .limit(1)
    )
    return (await session.execute(query)).scalars().first()


async def granted_items(session: AsyncSession, *, consumer: str, now: datetime) -> set[str]:
    query = sa.select(Grant.item_id).where(Grant.consumer_id == consumer, *_active(now))  # type: ignore[arg-type]
    return set((await session.execute(query)).scalars())


async def shared_item_ids(session: AsyncSession) -> list[str]:
    query = sa.select(Item.id).where(Item.sharing_class != "none").order_by(Item.id)  # type: ignore[arg-type]
    return list((await session.execute(query)).scalars())


async def get_grant(session: AsyncSession, grant_id: str) -> Grant | None:
    return await session.get(Grant, grant_id)


async def list_grants(session: AsyncSession, *, consumer: str | None) -> list[Grant]:
    query = sa.select(Grant).order_by(Grant.created_at)  # type: ignore[arg-type]
    if consumer is not None:
        query = query.where(Grant.consumer_id == consumer)  # type: ignore[arg-type]
    return list((await session.execute(query)).scalars())


def add(session: AsyncSession, grant: Grant) -> None:
    session.add(grant)
