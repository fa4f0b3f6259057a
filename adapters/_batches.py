"""Blocking calls grouped into one worker-thread call per batch (group commit).

Each handing-off of a call to a thread costs more CPU than a SQLite read or insert
(a queue put, a thread wake-up, the GIL, a loop wake-up: docs/performance.md, issue
18). `ThreadBatches` hands over every call that arrived while the previous batch ran,
as one list, to one thread of its own, and answers each caller with its own result.
A batch that fails fails every caller in it, and the next batch is tried afresh; a
result that is a `Failed` fails only its own caller (one unreadable row among many).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["Failed", "ThreadBatches"]

In = TypeVar("In")
Out = TypeVar("Out")


class Failed:
    """A result that fails its caller alone with ``error`` (the others of its batch get
    theirs)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class ThreadBatches(Generic[In, Out]):
    """``await batches(value)`` is ``run([value, ...])[i]``, ``run`` called in this
    object's worker thread with the values of every caller waiting at that moment.

    ``run`` returns one result per value, in order. Callers on one event loop only.

    Example::

        reads = ThreadBatches(store.get_many, name="store-reads")
        record = await reads(("person.identity", subject))
    """

    def __init__(self, run: Callable[[Sequence[In]], Sequence[Out | Failed]], *, name: str) -> None:
        self._run = run
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
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
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        batch: list[tuple[In, asyncio.Future[Out]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                values = [value for value, _ in batch]
                try:
                    results = await self._in_thread(loop, values)
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

    def _in_thread(
        self, loop: asyncio.AbstractEventLoop, values: list[In]
    ) -> asyncio.Future[Sequence[Out]]:
        """``run(values)`` in the worker thread (a queue put and, when done, one wake-up of
        the loop: less work than an executor's futures)."""
        done: asyncio.Future[Sequence[Out]] = loop.create_future()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=_work, args=(self._jobs,), name=self._name, daemon=True
            )
            self._thread.start()
        self._jobs.put(_Job(run=self._run, values=values, loop=loop, done=done))
        return done


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
        elif isinstance(result := results[number], Failed):
            waiter.set_exception(result.error)
        else:
            waiter.set_result(result)


class _Job:
    __slots__ = ("done", "loop", "run", "values")

    def __init__(
        self,
        *,
        run: Callable[[Sequence[Any]], Sequence[Any]],
        values: list[Any],
        loop: asyncio.AbstractEventLoop,
        done: asyncio.Future[Sequence[Any]],
    ) -> None:
        self.run, self.values, self.loop, self.done = run, values, loop, done


def _work(jobs: queue.SimpleQueue[_Job | None]) -> None:
    """The worker thread: run each job, hand its outcome to its loop; ``None`` ends it."""
    while (job := jobs.get()) is not None:
        try:
            results = job.run(job.values)
            if len(results) != len(job.values):
                raise RuntimeError(f"{len(results)} results for {len(job.values)} calls")
        except Exception as error:
            _hand_back(job, error=error)
        except BaseException as error:  # the thread lives on: no caller may wait forever
            stopped = RuntimeError(f"the batch was stopped by {type(error).__name__}")
            stopped.__cause__ = error
            _hand_back(job, error=stopped)
        else:
            _hand_back(job, results=results)


def _hand_back(job: _Job, *, results: Sequence[Any] = (), error: Exception | None = None) -> None:
    def settle() -> None:
        if job.done.done():  # the draining task was cancelled meanwhile
            return
        if error is not None:
            job.done.set_exception(error)
        else:
            job.done.set_result(results)

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass
