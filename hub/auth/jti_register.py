"""Spending single-use identifiers (assertion and DPoP proof ``jti``s) with group commit.

Every request that presents a single-use identifier waits here; one writer task per
process takes whatever is waiting and spends it all with **one** statement in one
transaction: ``INSERT ... ON CONFLICT DO NOTHING RETURNING key``. A key that comes
back was fresh; one that does not was spent before, on this or any replica (the
table is shared). A request pays a share of one commit instead of a commit of its
own, the way audit entries are appended (docs/decisions/0003).
"""

import logging
import random
from datetime import datetime
from types import ModuleType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from onceonly.hub.auth import repository
from onceonly.hub.db import write_connection
from onceonly.hub.kit.clock import SYSTEM_CLOCK, Clock
from onceonly.hub.kit.group_commit import GroupCommit
from onceonly.hub.kit.problems import Unavailable

log = logging.getLogger("onceonly.auth")


class JtiRegister:
    """The process's spender. ``start()`` in the lifespan, ``stop()`` drains it."""

    def __init__(
        self, engine: AsyncEngine, *, batch_size: int = 256, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._writer: GroupCommit[tuple[str, datetime], bool] = GroupCommit(
            self._spend_batch,
            name="jti-register",
            batch_size=batch_size,
            failure=lambda: Unavailable("the single-use register failed"),
            probe=self._can_spend,
        )

    @property
    def running(self) -> bool:
        return self._writer.running

    @property
    def healthy(self) -> bool:
        """Running, and its last commit (or probe since) succeeded: what /readyz reports."""
        return self._writer.healthy

    async def start(self) -> None:
        await self._writer.start()

    async def stop(self) -> None:
        await self._writer.stop()

    async def spend(self, key: str, *, expires_at: datetime) -> bool:
        """True if ``key`` was never spent before (and is spent now), False on a replay."""
        return await self._writer.submit((key, expires_at))

    async def _spend_batch(self, batch: list[tuple[str, datetime]]) -> list[bool]:
        rows = dict(batch)
        async with write_connection(self._engine) as conn:
            fresh = await _insert_returning(conn, rows)
            if random.random() < repository.PURGE_PROBABILITY * len(batch):
                await conn.execute(repository.purge_used_statement(), {"now": self._clock.now()})
        results, seen = [], set()
        for key, _ in batch:  # within one batch, the first of two equal keys wins
            results.append(key in fresh and key not in seen)
            seen.add(key)
        return results

    async def _can_spend(self) -> None:
        """The write path answers (a write transaction reads the register); nothing is spent."""
        async with write_connection(self._engine) as conn:
            await conn.execute(sa.select(repository.used_table().c.key).limit(1))


def _spend_statement(dialect: ModuleType) -> Any:
    table = repository.used_table()
    return dialect.insert(table).on_conflict_do_nothing().returning(table.c.key)


# Built once per dialect and run with a list of parameters (SQLAlchemy's "insertmanyvalues"
# makes it one multi-row INSERT ... RETURNING): a statement with the batch's values inlined
# was compiled anew for every batch.
_SPEND = {"postgresql": _spend_statement(postgresql), "sqlite": _spend_statement(sqlite)}


async def _insert_returning(conn: AsyncConnection, rows: dict[str, datetime]) -> set[str]:
    values = [{"key": key, "expires_at": expires} for key, expires in rows.items()]
    result = await conn.execute(_SPEND[conn.dialect.name], values)
    return set(result.scalars())
