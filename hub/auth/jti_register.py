"""Spending single-use identifiers (assertion and DPoP proof ``jti``s) with group commit.

Every request that presents a single-use identifier waits here; one writer task per
process takes whatever is waiting and spends it all with **one** statement in one
transaction: ``INSERT ... ON CONFLICT DO NOTHING RETURNING key``. A key that comes
back was fresh; one that does not was spent before, on this or any replica (the
table is shared). A request pays a share of one commit instead of a commit of its
own, the way audit entries are appended (docs/decisions/0003).

The same transaction reads the facts' generation (``facts_generation``, which
triggers bump with every change to what a record query's admission reads): a record
query that spends its proof learns, at no extra round trip, whether the facts its
process read earlier still hold (docs/decisions/0038).

A batch that needs no flush of its own (record queries' spends, decision 0043) is
written on the event loop's thread when SQLite's lock is free at that moment
(``onceonly.hub.loop_writes``), without the trip to the driver's thread; otherwise, and
on PostgreSQL, it takes the usual way.
"""

import logging
import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import psycopg
from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from onceonly.hub import db, metrics
from onceonly.hub.auth import repository
from onceonly.hub.db import write_connection
from onceonly.hub.kit.clock import SYSTEM_CLOCK, Clock
from onceonly.hub.kit.group_commit import GroupCommit
from onceonly.hub.kit.problems import Unavailable
from onceonly.hub.loop_writes import LoopWriter
from onceonly.hub.registry.models import FactsGeneration

_GENERATION = f"SELECT value FROM {FactsGeneration.__tablename__} WHERE id = 1"


@dataclass(frozen=True)
class Spent:
    """What one spend found: whether the key was fresh, and the facts' generation
    read in the same transaction (None if the database has no counter)."""

    fresh: bool
    generation: int | None


log = logging.getLogger("onceonly.auth")


class JtiRegister:
    """The process's spender. ``start()`` in the lifespan, ``stop()`` drains it."""

    def __init__(
        self, engine: AsyncEngine, *, batch_size: int = 256, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._engine = engine
        self._clock = clock
        self.here = LoopWriter(engine)  # batches written on the loop's thread (SQLite)
        self._writer: GroupCommit[tuple[str, datetime, bool], Spent] = GroupCommit(
            self._spend_batch,
            name="jti-register",
            batch_size=batch_size,
            failure=lambda: Unavailable("the single-use register failed"),
            probe=self._can_spend,
            observe=metrics.commit_wait("jti"),
        )

    @property
    def running(self) -> bool:
        return self._writer.running

    @property
    def healthy(self) -> bool:
        """Running, and its last commit (or probe since) succeeded: what /readyz reports."""
        return self._writer.healthy

    async def start(self) -> None:
        self.here.open()
        await self._writer.start()

    async def stop(self) -> None:
        try:
            await self._writer.stop()
        finally:
            self.here.close()

    async def spend(self, key: str, *, expires_at: datetime, durable: bool = True) -> bool:
        """True if ``key`` was never spent before (and is spent now), False on a replay.

        ``durable=False`` when the caller answers only after a durable commit of its own
        (the record query's audit entry): the spend's commit then does not wait for its
        own flush to disk; that later commit flushes it (docs/decisions/0043). A batch
        is flushed if any of its spends asks for it."""
        return (await self._writer.submit((key, expires_at, durable))).fresh

    async def spend_reading_generation(
        self, key: str, *, expires_at: datetime, durable: bool = True
    ) -> Spent:
        """As :meth:`spend`, with the facts' generation as its transaction read it."""
        return await self._writer.submit((key, expires_at, durable))

    async def _spend_batch(self, batch: list[tuple[str, datetime, bool]]) -> list[Spent]:
        rows = list({key: expires for key, expires, _ in batch}.items())
        purge_before = None
        if random.random() < repository.PURGE_PROBABILITY * len(batch):
            purge_before = self._clock.now()
        flushed = any(durable for _, _, durable in batch)
        done, found = False, None
        if not flushed and purge_before is None:  # a purge may delete many rows: not here
            done, found = self.here.try_write(lambda conn: _spend_now(conn, rows, None))
        if done and found is not None:
            fresh, generation = found
        else:
            fresh, generation = await db.write_in_one_call(
                self._engine,
                sqlite_work=lambda conn: _spend_now(conn, rows, purge_before),
                postgres_work=lambda conn: _spend_pg(conn, rows, purge_before),
                durable=flushed,
            )
        results, seen = [], set()
        for key, _, _ in batch:  # within one batch, the first of two equal keys wins
            results.append(Spent(key in fresh and key not in seen, generation))
            seen.add(key)
        return results

    async def _can_spend(self) -> None:
        """The write path answers (a write transaction reads the register); nothing is spent."""
        async with write_connection(self._engine) as conn:
            await conn.execute(sa.select(repository.used_table().c.key).limit(1))


# --- one batch as one call to the driver (onceonly.hub.db.write_in_one_call) -----------
#
# The statement SQLAlchemy sent for a batch (its "insertmanyvalues": one multi-row
# INSERT ... ON CONFLICT DO NOTHING RETURNING key), and the purge, as text compiled once
# per dialect, with the values bound as SQLAlchemy binds them; on SQLite the batch is
# one function on aiosqlite's thread (it was 8 hand-offs), on PostgreSQL the INSERT and
# the COMMIT go in one round trip after the pool's pre-ping (they were three).


@dataclass(frozen=True)
class _Forms:
    """The register's statements as text for one dialect, and its datetime binder."""

    insert_head: str  # INSERT INTO used_jtis (key, expires_at) VALUES
    row: str  # (?, ?)
    tail: str  # ON CONFLICT DO NOTHING RETURNING key
    purge: str
    bind_time: Callable[[datetime], Any]

    def insert(self, count: int) -> str:
        return f"{self.insert_head} {', '.join([self.row] * count)} {self.tail}"


def _forms(dialect: sa.Dialect, paramstyle: str) -> _Forms:
    table = repository.used_table()
    positional = type(dialect)(paramstyle=paramstyle)  # type: ignore[call-arg]
    one = str(_spend_statement(dialect).compile(dialect=positional))
    head, values = one.split(" VALUES ", 1)
    row, tail = values.split(") ", 1)
    purge = str(repository.purge_used_statement().compile(dialect=positional))
    process = table.c.expires_at.type.dialect_impl(dialect).bind_processor(dialect)
    return _Forms(f"{head} VALUES", row + ")", tail, purge, process or (lambda value: value))


def _spend_statement(dialect: sa.Dialect) -> Any:
    table = repository.used_table()
    insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing().returning(table.c.key)


_FORMS = {
    "sqlite": _forms(pysqlite.dialect(), "qmark"),
    "postgresql": _forms(psycopg.dialect(), "format"),  # type: ignore[no-untyped-call]
}


def _params(forms: _Forms, rows: list[tuple[str, datetime]]) -> list[Any]:
    return [value for key, expires in rows for value in (key, forms.bind_time(expires))]


def _spend_now(
    conn: sqlite3.Connection, rows: list[tuple[str, datetime]], purge_before: datetime | None
) -> tuple[set[str], int | None]:
    forms = _FORMS["sqlite"]
    fresh = {key for (key,) in conn.execute(forms.insert(len(rows)), _params(forms, rows))}
    if purge_before is not None:
        conn.execute(forms.purge, (forms.bind_time(purge_before),))
    return fresh, _generation_of(conn.execute(_GENERATION).fetchone())


async def _spend_pg(
    conn: Any, rows: list[tuple[str, datetime]], purge_before: datetime | None
) -> tuple[set[str], int | None]:
    forms = _FORMS["postgresql"]
    cursor = conn.cursor()
    await cursor.execute(forms.insert(len(rows)), _params(forms, rows))
    if purge_before is not None:
        await conn.execute(forms.purge, (purge_before,))
    reading = conn.cursor()
    await reading.execute(_GENERATION)
    await conn.commit()  # sent with the INSERT and the read; their rows are read after
    fresh = {key for (key,) in await cursor.fetchall()}
    return fresh, _generation_of(await reading.fetchone())


def _generation_of(row: Any) -> int | None:
    return None if row is None else int(row[0])
