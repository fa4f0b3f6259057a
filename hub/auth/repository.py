"""All SQL of authentication: spending single-use identifiers."""

import hashlib
import random
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.auth.models import UsedJti
from hub.db import write_connection

_table = UsedJti.__table__  # type: ignore[attr-defined]
_PURGE_PROBABILITY = 0.01


def jti_key(*, kind: str, issuer: str, jti: str) -> str:
    return hashlib.sha256(f"{kind}\x00{issuer}\x00{jti}".encode()).hexdigest()


async def spend_jti(engine: AsyncEngine, *, key: str, expires_at: datetime, now: datetime) -> bool:
    """Record a jti as used, in its own committed transaction; False if it was used before.

    It commits at once, apart from the request: an identifier once presented is
    spent even if the request fails later, and every replica sees it.
    """
    try:
        async with write_connection(engine) as conn:
            await conn.execute(sa.insert(_table).values(key=key, expires_at=expires_at))
            if random.random() < _PURGE_PROBABILITY:
                await conn.execute(sa.delete(_table).where(_table.c.expires_at < now))
    except IntegrityError:
        return False
    return True
