"""All SQL of grants."""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub.access.models import Grant
from hub.registry.models import Item


def _active(now: datetime) -> list[sa.ColumnElement[bool]]:
    return [
        col(Grant.status) == "active",
        col(Grant.valid_from) <= now,
        sa.or_(col(Grant.valid_until).is_(None), col(Grant.valid_until) > now),
    ]


async def active_grant(
    session: AsyncSession, *, consumer: str, item: str, purpose: str, now: datetime
) -> Grant | None:
    query = (
        select(Grant)
        .where(
            col(Grant.consumer_id) == consumer,
            col(Grant.item_id) == item,
            col(Grant.purpose) == purpose,
            *_active(now),
        )
        .order_by(col(Grant.created_at))
        .limit(1)
    )
    return (await session.execute(query)).scalars().first()


async def granted_items(session: AsyncSession, *, consumer: str, now: datetime) -> set[str]:
    query = select(Grant.item_id).where(col(Grant.consumer_id) == consumer, *_active(now))
    return set((await session.execute(query)).scalars())


async def owned_items(session: AsyncSession, *, owner: str) -> list[str]:
    query = select(Item.id).where(col(Item.owner_id) == owner, col(Item.lifecycle) != "retired")
    return list((await session.execute(query)).scalars())


async def shared_item_ids(session: AsyncSession) -> list[str]:
    query = select(Item.id).where(col(Item.sharing_class) != "none").order_by(col(Item.id))
    return list((await session.execute(query)).scalars())


async def get_grant(session: AsyncSession, grant_id: str) -> Grant | None:
    return await session.get(Grant, grant_id)


async def list_grants(session: AsyncSession, *, consumer: str | None) -> list[Grant]:
    query = select(Grant).order_by(col(Grant.created_at))
    if consumer is not None:
        query = query.where(col(Grant.consumer_id) == consumer)
    return list((await session.execute(query)).scalars())


def add(session: AsyncSession, grant: Grant) -> None:
    session.add(grant)
