"""All SQL of the registry."""

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub.registry.models import Client, Department, Item, ItemVersion


async def get_department(session: AsyncSession, department_id: str) -> Department | None:
    return await session.get(Department, department_id)


async def get_client(session: AsyncSession, client_id: str) -> Client | None:
    return await session.get(Client, client_id)


async def get_item(session: AsyncSession, item_id: str) -> Item | None:
    return await session.get(Item, item_id)


async def get_version(session: AsyncSession, item_id: str, version: int) -> ItemVersion | None:
    return await session.get(ItemVersion, (item_id, version))


async def list_items(session: AsyncSession) -> list[Item]:
    return list((await session.execute(select(Item).order_by(col(Item.id)))).scalars())


async def list_versions(session: AsyncSession, item_ids: list[str]) -> list[ItemVersion]:
    query = select(ItemVersion).where(col(ItemVersion.item_id).in_(item_ids))
    return list((await session.execute(query)).scalars())


def add(session: AsyncSession, row: Department | Client | Item | ItemVersion) -> None:
    session.add(row)
