"""All SQL of the registry."""

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from onceonly.hub.registry.models import Client, Department, Item, ItemVersion, RegistryChange
from onceonly.hub.registry.schemas import ItemQuery


async def get_department(session: AsyncSession, department_id: str) -> Department | None:
    return await session.get(Department, department_id)


async def list_departments(session: AsyncSession) -> list[Department]:
    query = select(Department).order_by(col(Department.id))
    return list((await session.execute(query)).scalars())


async def get_client(session: AsyncSession, client_id: str) -> Client | None:
    return await session.get(Client, client_id)


async def list_clients(session: AsyncSession, *, department: str | None) -> list[Client]:
    query = select(Client).order_by(col(Client.client_id))
    if department is not None:
        query = query.where(col(Client.department_id) == department)
    return list((await session.execute(query)).scalars())


async def get_item(session: AsyncSession, item_id: str) -> Item | None:
    return await session.get(Item, item_id)


async def get_version(session: AsyncSession, item_id: str, version: int) -> ItemVersion | None:
    return await session.get(ItemVersion, (item_id, version))


async def get_item_for_update(session: AsyncSession, item_id: str) -> Item | None:
    """The item, locked until the transaction ends (PostgreSQL), so versions are numbered
    one at a time; SQLite's writers are serialized already."""
    return await session.get(Item, item_id, with_for_update=True)


async def owned_item_ids(session: AsyncSession, *, owner: str) -> list[str]:
    """The ids of every item ``owner`` owns, in any lifecycle state."""
    query = select(Item.id).where(col(Item.owner_id) == owner)
    return list((await session.execute(query)).scalars())


async def item_owners(session: AsyncSession) -> dict[str, str]:
    """Every registered item id, with its owner department's id."""
    rows = await session.execute(sa.select(col(Item.id), col(Item.owner_id)))
    return {item: owner for item, owner in rows.all()}


async def department_ids(session: AsyncSession) -> set[str]:
    return set((await session.execute(sa.select(col(Department.id)))).scalars())


async def list_items(session: AsyncSession) -> list[Item]:
    return list((await session.execute(select(Item).order_by(col(Item.id)))).scalars())


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search_items(session: AsyncSession, query: ItemQuery) -> list[Item]:
    """Items matching every criterion but ``tag`` (tags are a JSON list: the service filters)."""
    statement = select(Item).order_by(col(Item.id))
    for column, value in (
        (Item.owner_id, query.owner),
        (Item.classification, query.classification),
        (Item.sharing_class, query.sharing_class),
        (Item.lifecycle, query.lifecycle),
    ):
        if value is not None:
            statement = statement.where(col(column) == value)
    if query.q:
        pattern = _like(query.q)
        statement = statement.where(
            sa.or_(
                *(
                    sa.func.lower(col(column)).like(pattern, escape="\\")
                    for column in (Item.id, Item.title, Item.description)
                )
            )
        )
    return list((await session.execute(statement)).scalars())


async def item_versions(session: AsyncSession, item_id: str) -> list[ItemVersion]:
    """Every version of an item, oldest first."""
    query = (
        select(ItemVersion)
        .where(col(ItemVersion.item_id) == item_id)
        .order_by(col(ItemVersion.version))
    )
    return list((await session.execute(query)).scalars())


async def list_versions(session: AsyncSession, item_ids: list[str]) -> list[ItemVersion]:
    query = select(ItemVersion).where(col(ItemVersion.item_id).in_(item_ids))
    return list((await session.execute(query)).scalars())


def add(
    session: AsyncSession, row: Department | Client | Item | ItemVersion | RegistryChange
) -> None:
    session.add(row)


async def get_change(session: AsyncSession, change_id: str) -> RegistryChange | None:
    return await session.get(RegistryChange, change_id, populate_existing=True)


async def pending_change(session: AsyncSession, item_id: str) -> RegistryChange | None:
    query = select(RegistryChange).where(
        col(RegistryChange.item_id) == item_id, col(RegistryChange.status) == "pending"
    )
    return (await session.execute(query.limit(1))).scalars().first()


async def list_changes(
    session: AsyncSession, *, status: str | None, item: str | None, limit: int
) -> list[tuple[RegistryChange, str]]:
    """Changes and their item's owner, oldest first."""
    query = select(RegistryChange, Item.owner_id).join(
        Item, col(Item.id) == col(RegistryChange.item_id)
    )
    if status is not None:
        query = query.where(col(RegistryChange.status) == status)
    if item is not None:
        query = query.where(col(RegistryChange.item_id) == item)
    query = query.order_by(col(RegistryChange.requested_at), col(RegistryChange.id)).limit(limit)
    return [(row[0], row[1]) for row in await session.execute(query)]


async def settle_change(
    session: AsyncSession, *, change_id: str, status: str, **values: Any
) -> bool:
    """Compare-and-set pending → ``status``; False if the change was no longer pending."""
    statement = (
        sa.update(RegistryChange)
        .where(col(RegistryChange.id) == change_id, col(RegistryChange.status) == "pending")
        .values(status=status, **values)
        .execution_options(synchronize_session=False)
    )
    result: Any = await session.execute(statement)
    return bool(result.rowcount == 1)
