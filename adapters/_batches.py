"""Blocking calls grouped into one worker-thread call per batch (group commit).

Each handing-off of a call to a thread costs more CPU than a SQLite read or insert
(a queue put, a thread wake-up, the GIL, a loop wake-up: docs/performance.md, issue
18). `ThreadBatches` hands over every call that arrived while the previous batch ran,
as one list, to one thread of its own, and answers each caller with its own result.
A batch that fails fails every caller in it, and the next batch is tried afresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

__all__ = ["ThreadBatches"]

In = TypeVar("In")
Out = TypeVar("Out")


class ThreadBatches(Generic[In, Out]):
    """``await batches(value)`` is ``run([value, ...])[i]``, ``run`` called in this
    object's worker thread with the values of every caller waiting at that moment.

    ``run`` returns one result per value, in order. Callers on one event loop only.

    Example::

        reads = ThreadBatches(store.get_many, name="store-reads")
        record = await reads(("person.identity", subject))
    """

    def __init__(self, run: Callable[[Sequence[In]], Sequence[Out]], *, name: str) -> None:
        self._run = run
        self._name = name
        self._executor: ThreadPoolExecutor | None = None
        self._waiting: list[tuple[In, asyncio.Future[Out]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def __call__(self, value: In) -> Out:
        loop = asyncio.get_running_loop()
        result: asyncio.Future[Out] = loop.create_future()
        self._waiting.append((value, result))
        if self._draining is None:
            self._draining = loop.create_task(self._drain())
        return await result

    def close(self) -> None:
        """Let the worker thread end once the batch it runs (if any) is done."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        batch: list[tuple[In, asyncio.Future[Out]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                values = [value for value, _ in batch]
                try:
                    results = await loop.run_in_executor(self._worker(), self._run_all, values)
                except Exception as error:  # every caller of the batch learns it
                    _settle(batch, error=error)
                else:
                    _settle(batch, results=results)
        except BaseException:  # cancelled with the loop: no caller waits forever
            _settle(batch + self._waiting, error=RuntimeError(f"{self._name} was stopped"))
            self._waiting = []
            raise
        finally:
            self._draining = None

    def _run_all(self, values: list[In]) -> Sequence[Out]:
        results = self._run(values)
        if len(results) != len(values):
            raise RuntimeError(f"{self._name}: {len(results)} results for {len(values)} calls")
        return results

    def _worker(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        return self._executor


def _settle(
    batch: list[tuple[In, asyncio.Future[Out]]],
    *,
    results: Sequence[Out] = (),
    error: Exception | None = None,
) -> None:
    for number, (_, waiter) in enumerate(batch):
        if waiter.done():  # its caller was cancelled
            continue
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(results[number])
