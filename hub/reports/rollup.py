"""Adding the audit log's record queries into the report's roll-ups, exactly once.

:func:`onceonly.hub.reports.tally.tally` turns entries into sums (pure);
:class:`Rollup` is the background worker that keeps the roll-ups at most
``interval`` seconds behind the log. A report catches up first
(:meth:`Rollup.catch_up`), so that it counts every entry committed before it was
asked for. Many replicas may run it against one database: each batch moves the
cursor with a compare-and-set in the transaction that adds the batch, so a batch is
added once whoever adds it.
"""

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from onceonly.hub import db
from onceonly.hub.db import write_connection
from onceonly.hub.kit.clock import Clock
from onceonly.hub.reports import repository
from onceonly.hub.reports.tally import ACTION, Tally, tally

log = logging.getLogger("onceonly.reports")


# Batches lost in a row to other replicas before this catch-up leaves the rest to them.
_MAX_RACES = 50

STOP_SECONDS = 5.0
"""How long stopping the worker waits for a batch under way."""

BATCH_SIZE = 200
"""Entries a batch adds. Small: on SQLite a batch's write holds the database's write
lock, which every exchange's audit entry waits for, and its sums have a row for each
subject it names. 1,000 entries held it 15-36 ms on a busy hub, and after a busy
half-minute the batches ran back to back: at 300 exchanges a second, with the hub on a
core of its own, the latency it added at p99 (bench/exchange.py) was 35-48 ms; with
200, 15-19 ms (docs/performance.md, thirteenth round)."""


class _Raced(Exception):
    """Another catch-up moved the cursor first: roll ours back."""


class Rollup:
    """The worker: ``start()`` in the lifespan, ``stop()`` at its end."""

    def __init__(
        self, engine: AsyncEngine, *, interval: float, clock: Clock, batch_size: int = BATCH_SIZE
    ) -> None:
        self._engine = engine
        self._interval = interval
        self._clock = clock
        self._batch_size = batch_size
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        self._stopping = asyncio.Event()  # made in the loop that waits on it
        self._task = asyncio.create_task(self._run(), name="report-rollup")

    async def stop(self) -> None:
        """End the worker between batches: a batch under way finishes, for at most
        ``STOP_SECONDS`` (cancelled in the middle of a read or write, its connection
        would be invalidated and, on SQLite, left open for the garbage collector)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        await asyncio.wait((task,), timeout=STOP_SECONDS)
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def catch_up(self, *, budget: float | None = None) -> repository.Progress:
        """Add what the log holds beyond the cursor, batch by batch, for at most ``budget``
        seconds (None: until the end); where the roll-ups and the log then stand.

        Catch-ups run side by side (the worker's, a report's, other replicas'): each
        batch is added by whichever moves the cursor first, so a report never waits for
        the worker to finish, only works beside it for its budget."""
        deadline = None if budget is None else self._clock.monotonic() + budget
        races = 0
        while True:
            progress = await self._add_batch()
            races = races + 1 if progress.through < 0 else 0
            if progress.behind == 0 or races >= _MAX_RACES or self._stopping.is_set():
                return progress
            if deadline is not None and self._clock.monotonic() >= deadline:
                return progress

    async def _add_batch(self) -> repository.Progress:
        """One batch: read and summed before the write transaction, so that on SQLite
        the database's write lock, which every exchange's audit entry waits for, is
        held only to move the cursor and add the sums."""
        async with self._engine.connect() as conn:  # read first: nothing new, no write lock
            start = await repository.cursor(conn)
            size = await repository.log_size(conn)
            if start >= size:
                return repository.Progress(through=start, log_size=size)
            end = min(size, start + self._batch_size)
            # entries below the log's size are committed and never change
            leaves = await repository.leaves_between(conn, start, end, action=ACTION)
        sums = await _tally_in_steps(leaves)
        if not await self._add(start, end, sums):  # another catch-up added this batch first
            return repository.Progress(through=-1, log_size=size)
        return repository.Progress(through=end, log_size=size)

    async def _add(self, start: int, end: int, sums: Tally) -> bool:
        """Move the cursor from ``start`` to ``end`` and add ``sums``, in one transaction;
        False, with nothing written, if another catch-up moved it first. On SQLite one
        call on the driver's thread, behind the write gate (the lock held about a
        millisecond for a small batch and some 20 ms for a full one, not 35-110 ms, or
        seconds under a busy loop); on PostgreSQL, whose row locks leave the audit
        writer alone, statement by statement."""
        if self._engine.dialect.name == "sqlite":
            # Unflushed (decision 0043): the cursor and the sums commit together, and a
            # crash that loses both only makes the next catch-up add that batch again.
            upserts = repository.sqlite_upserts(sums)
            return await db.write_in_one_call(
                self._engine,
                sqlite_work=lambda conn: repository.add_now(
                    conn, start=start, end=end, upserts=upserts
                ),
                durable=False,
            )
        try:
            async with write_connection(self._engine) as conn:
                if not await repository.move_cursor(conn, start=start, end=end):
                    raise _Raced
                await repository.add(conn, sums)
                return True
        except _Raced:  # ours rolled back
            return False

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.catch_up()
            except Exception:  # a passing database fault must not stop the roll-ups
                log.exception("report roll-up failed; retrying in %.1f s", self._interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)


# Leaves summed between two turns of the event loop: about 1 ms of parsing, so that a
# batch does not hold up the requests in flight for the whole of it (10-16 ms).
_TALLY_STEP = 100


async def _tally_in_steps(leaves: list[bytes]) -> Tally:
    sums = Tally()
    for first in range(0, len(leaves), _TALLY_STEP):
        if first:
            await asyncio.sleep(0)
        sums.add(tally(leaves[first : first + _TALLY_STEP]))
    return sums
