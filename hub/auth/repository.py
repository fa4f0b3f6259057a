"""All SQL of authentication: revoked tokens, a client's standing, its own keys and
when it was disabled (the single-use identifiers are spent by
``onceonly.hub.auth.jti_register``)."""

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from onceonly.hub.auth.models import ClientDisablement, RevokedToken, UsedJti
from onceonly.hub.db import write_connection
from onceonly.hub.registry.models import Client

_used = UsedJti.__table__  # type: ignore[attr-defined]
_revoked = RevokedToken.__table__  # type: ignore[attr-defined]
_clients = Client.__table__  # type: ignore[attr-defined]
PURGE_PROBABILITY = 0.01


def jti_key(*, kind: str, issuer: str, jti: str) -> str:
    return hashlib.sha256(f"{kind}\x00{issuer}\x00{jti}".encode()).hexdigest()


def purge_used_statement() -> Any:
    return sa.delete(_used).where(_used.c.expires_at < sa.bindparam("now"))


def used_table() -> Any:
    """The register of spent single-use identifiers (written by ``jti_register``)."""
    return _used


def revoked_clause(jti: Any) -> Any:
    """``EXISTS`` a revocation of the token ``jti``: for any query that admits a token."""
    return sa.exists(sa.select(_revoked.c.jti).where(_revoked.c.jti == jti))


@dataclass(frozen=True)
class Standing:
    department: str
    status: str
    revoked: bool


_STANDING = sa.select(
    _clients.c.department_id,
    _clients.c.status,
    revoked_clause(sa.bindparam("jti")).label("revoked"),
).where(_clients.c.client_id == sa.bindparam("client_id"))


async def client_standing(
    session: AsyncSession, *, client_id: str, token_jti: str
) -> Standing | None:
    """The client's department and status, and whether this token was revoked: one query."""
    row = (await session.execute(_STANDING, {"client_id": client_id, "jti": token_jti})).first()
    if row is None:
        return None
    return Standing(department=row.department_id, status=row.status, revoked=bool(row.revoked))


async def revoke(engine: AsyncEngine, *, jti: str, expires_at: datetime, now: datetime) -> None:
    """Keep ``jti`` refused until ``expires_at`` (RFC 7009 §2.2), committed at once so
    that every replica refuses it from now on; idempotent."""
    async with write_connection(engine) as conn:
        await conn.execute(sa.delete(_revoked).where(_revoked.c.expires_at < now))
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(_revoked).values(jti=jti, expires_at=expires_at)
        await conn.execute(insert.on_conflict_do_nothing())


async def set_client_jwks(session: AsyncSession, *, client_id: str, jwks: dict[str, Any]) -> None:
    """Replace the public keys of one client (its own key rotation)."""
    await session.execute(
        sa.update(_clients).where(_clients.c.client_id == client_id).values(jwks=jwks)
    )


async def last_disabled(session: AsyncSession, client_id: str) -> datetime | None:
    row = await session.get(ClientDisablement, client_id)
    return row.disabled_at if row is not None else None


async def record_disablement(session: AsyncSession, *, client_id: str, at: datetime) -> None:
    row = await session.get(ClientDisablement, client_id)
    if row is None:
        session.add(ClientDisablement(client_id=client_id, disabled_at=at))
    else:
        row.disabled_at = at
