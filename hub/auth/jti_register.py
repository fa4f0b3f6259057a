"""Spending single-use identifiers (assertion and DPoP proof ``jti``s) with group commit.

Every request that presents a single-use identifier waits here; one writer task per
process takes whatever is waiting and spends it all with **one** statement in one
transaction: ``INSERT ... ON CONFLICT DO NOTHING RETURNING key``. A key that comes
back was fresh; one that does not was spent before, on this or any replica (the
table is shared). A request pays a share of one commit instead of a commit of its
own, the way audit entries are appended (docs/decisions/0003).
"""

import asyncio
import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.auth import repository
from hub.db import write_connection
from hub.errors import Unavailable

log = logging.getLogger("onceonly.auth")


@dataclass
class _Pending:
    key: str
    expires_at: datetime
    done: asyncio.Future[bool]


class JtiRegister:
    """The process's spender. ``start()`` in the lifespan, ``stop()`` drains it."""

    def __init__(self, engine: AsyncEngine, *, batch_size: int = 256) -> None:
        self._engine = engine
        self._batch_size = batch_size
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._writer = asyncio.create_task(self._run(), name="jti-register")

    async def stop(self) -> None:
        if self._writer is None:
            return
        await self._queue.join()
        self._writer.cancel()
        self._writer = None

    async def spend(self, key: str, *, expires_at: datetime) -> bool:
        """True if ``key`` was never spent before (and is spent now), False on a replay."""
        if self._writer is None:
            raise Unavailable("the single-use register is not running")
        pending = _Pending(key, expires_at, asyncio.get_running_loop().create_future())
        await self._queue.put(pending)
        return await pending.done

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            fresh = await self._insert(batch)
        except Exception:
            log.exception("could not spend %d single-use identifiers", len(batch))
            for pending in batch:
                if not pending.done.done():
                    pending.done.set_exception(Unavailable("the single-use register failed"))
            return
        seen: set[str] = set()
        for pending in batch:  # within one batch, the first of two equal keys wins
            if not pending.done.done():
                pending.done.set_result(pending.key in fresh and pending.key not in seen)
            seen.add(pending.key)

    async def _insert(self, batch: list[_Pending]) -> set[str]:
        rows = {p.key: p.expires_at for p in batch}
        async with write_connection(self._engine) as conn:
            inserted = await _insert_returning(conn, rows)
            if random.random() < repository.PURGE_PROBABILITY * len(batch):
                await conn.execute(repository.purge_used_statement(), {"now": datetime.now(UTC)})
        return inserted


async def _insert_returning(conn: AsyncConnection, rows: dict[str, datetime]) -> set[str]:
    table = repository.used_table()
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    values = [{"key": key, "expires_at": expires} for key, expires in rows.items()]
    statement = dialect.insert(table).values(values).on_conflict_do_nothing()
    result = await conn.execute(statement.returning(table.c.key))
    return set(result.scalars())
