"""Group commit: many awaiting callers, one writer task, one transaction per batch.

A caller submits an item and awaits its result; the writer takes whatever is
waiting (up to ``batch_size``), hands the batch to ``commit`` (one database
transaction), and resolves each caller with its result, or with the ``failure``
error when the batch could not be committed. Callers pay a share of one commit
instead of a commit each. Used by the audit log and the single-use jti register.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from hub.errors import HubError

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("onceonly.group_commit")


@dataclass
class _Waiting(Generic[T, R]):
    item: T
    done: asyncio.Future[R]


class GroupCommit(Generic[T, R]):
    """``start()`` in the lifespan; ``stop()`` commits what is waiting, then ends."""

    def __init__(
        self,
        commit: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        name: str,
        batch_size: int,
        failure: Callable[[], HubError],
    ) -> None:
        self._commit, self._name, self._batch_size = commit, name, batch_size
        self._failure = failure
        self._queue: asyncio.Queue[_Waiting[T, R]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._writer is not None and not self._writer.done()

    async def start(self) -> None:
        self._writer = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._writer is None:
            return
        await self._queue.join()
        self._writer.cancel()
        self._writer = None

    async def submit(self, item: T) -> R:
        """The item's result once its batch committed; ``failure()`` if it could not."""
        if self._writer is None:
            raise self._failure()
        waiting: _Waiting[T, R] = _Waiting(item, asyncio.get_running_loop().create_future())
        await self._queue.put(waiting)
        return await waiting.done

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._settle(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _settle(self, batch: list[_Waiting[T, R]]) -> None:
        try:
            results = await self._commit([waiting.item for waiting in batch])
        except Exception:
            log.exception("%s: a batch of %d could not be committed", self._name, len(batch))
            for waiting in batch:
                if not waiting.done.done():
                    waiting.done.set_exception(self._failure())
            return
        for waiting, result in zip(batch, results, strict=True):
            if not waiting.done.done():
                waiting.done.set_result(result)
