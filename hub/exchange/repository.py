"""All SQL of the exchange: everything one record query needs, in one round trip.

The hot path reads client, item, latest version, owner and the matching grant
with a single Core query (no ORM objects), so that a query costs one database
call before the owner is asked, and one audit append after.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.access.models import Grant
from hub.registry.models import Client, Department, Item, ItemVersion

_items = Item.__table__  # type: ignore[attr-defined]
_versions = ItemVersion.__table__  # type: ignore[attr-defined]
_departments = Department.__table__  # type: ignore[attr-defined]
_grants = Grant.__table__  # type: ignore[attr-defined]
_clients = Client.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ExchangeFacts:
    """What the registry and the grants say about one query; ``None`` members are absent."""

    item_id: str
    lifecycle: str
    version: int
    schema: dict[str, Any]
    fingerprint: str
    owner: str
    adapter_url: str | None
    client_department: str | None
    client_status: str | None
    grant_id: str | None
    grant_fields: list[str] | None


def _facts_query() -> Any:
    """Built once: bound parameters keep it in SQLAlchemy's compiled cache."""
    now = sa.bindparam("now", type_=sa.DateTime(timezone=True))
    grant = (
        sa.select(_grants.c.id, _grants.c.fields)
        .where(
            _grants.c.consumer_id == sa.bindparam("consumer"),
            _grants.c.item_id == sa.bindparam("item_id"),
            _grants.c.purpose == sa.bindparam("purpose"),
            _grants.c.status == "active",
            _grants.c.valid_from <= now,
            sa.or_(_grants.c.valid_until.is_(None), _grants.c.valid_until > now),
        )
        .order_by(_grants.c.created_at)
        .limit(1)
        .subquery("grant")
    )
    client = (
        sa.select(_clients.c.department_id, _clients.c.status)
        .where(_clients.c.client_id == sa.bindparam("client_id"))
        .subquery("client")
    )
    return (
        sa.select(
            _items.c.id,
            _items.c.lifecycle,
            _versions.c.version,
            _versions.c.schema,
            _versions.c.fingerprint,
            _departments.c.id.label("owner"),
            _departments.c.adapter_url,
            client.c.department_id.label("client_department"),
            client.c.status.label("client_status"),
            grant.c.id.label("grant_id"),
            grant.c.fields.label("grant_fields"),
        )
        .select_from(_items)
        .join(
            _versions,
            sa.and_(
                _versions.c.item_id == _items.c.id, _versions.c.version == _items.c.latest_version
            ),
        )
        .join(_departments, _departments.c.id == _items.c.owner_id)
        .outerjoin(client, sa.true())
        .outerjoin(grant, sa.true())
        .where(_items.c.id == sa.bindparam("item_id"))
    )


_FACTS = _facts_query()


async def exchange_facts(
    conn: AsyncConnection,
    *,
    item_id: str,
    client_id: str,
    consumer: str,
    purpose: str,
    now: datetime,
) -> ExchangeFacts | None:
    """The facts of one query, or ``None`` when the item does not exist."""
    params = {
        "item_id": item_id,
        "client_id": client_id,
        "consumer": consumer,
        "purpose": purpose,
        "now": now,
    }
    row = (await conn.execute(_FACTS, params)).first()
    if row is None:
        return None
    return ExchangeFacts(
        item_id=row.id,
        lifecycle=row.lifecycle,
        version=row.version,
        schema=row.schema,
        fingerprint=row.fingerprint,
        owner=row.owner,
        adapter_url=row.adapter_url,
        client_department=row.client_department,
        client_status=row.client_status,
        grant_id=row.grant_id,
        grant_fields=row.grant_fields,
    )
