"""Group commit: many awaiting callers, one writer task, one transaction per batch.

A caller submits an item and awaits its result; the writer takes whatever is
waiting (up to ``batch_size``), hands the batch to ``commit`` (one database
transaction), and resolves each caller with its result. Callers pay a share of one
commit instead of a commit each. Used by the audit log and the single-use jti
register.

Nobody waits forever (STYLE habit 14):

- A batch that cannot be committed (``commit`` raises anything but the refusal of
  an item, below, a cancellation of its own included, or returns a result list of
  the wrong length) fails every caller of that batch with ``failure()``. The writer
  logs it (the first failure of a run at ERROR with its traceback, the next ones of
  the same run as one WARNING line each, and "batches commit again" when one does),
  reports itself unhealthy (``healthy`` is False) and goes on with the next
  batch: a database blip must not take the hub down. It is healthy again once a
  batch commits or, while nothing is waiting, once ``probe`` (a cheap check of the
  write path, tried every ``probe_interval`` seconds) succeeds.
- If the writer task itself ends (a bug, a cancellation from outside), that is
  logged as an error; every caller still queued or in the batch gets ``failure()``,
  and ``submit`` refuses new work at once with ``failure()``.
- The queue is bounded: at most ``max_queued`` items wait (default: ten batches,
  10 x ``batch_size``). A caller beyond that waits for room (back-pressure), or gets
  ``failure()`` as soon as the writer ends.
- ``stop()`` refuses new work and commits what is queued for up to
  ``drain_timeout`` seconds; then it cancels the writer, gives it as long again to
  end, and fails whatever is left. It returns within twice ``drain_timeout``
  whether the writer was running, stuck in a commit or dead.

One item that the store refuses for what it holds must not fail the others (decision
0044). ``refusal`` names such an error (a value too long for its column, a
constraint the row breaks: the same item would be refused in any batch), and returns
None for any other. A batch refused that way is committed again in two halves, each a
transaction of its own, the first half first (items keep their order), and so on
down to the items that the store refuses on their own: their callers get
``failure()``, the others their results. k refused items of a batch of n cost at most
about 2k (log2(n / k) + 1) more commits. A refusal shows that the store answers: it
neither marks the writer unhealthy nor counts as a failed batch; it is logged as a
warning with ``refusal``'s name for it, never the item, and counted in
``refused_items``. Any other error, of the batch or of a part of it, fails the batch
as above at once (every caller not answered yet), so an outage never turns into many
small transactions. Without ``refusal`` every error fails the whole batch.

What an operator watches (read at a scrape, so they cost nothing per item): ``waiting``
(items submitted and not yet settled, those waiting for room included), ``lag``
(seconds the oldest of them has waited, 0 when none), ``failed_batches`` (batches
that could not be committed since the process started) and ``refused_items`` (items
the store refused for what they hold).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from onceonly.hub.kit.problems import HubError

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("onceonly.group_commit")


class _ResultCountMismatch(RuntimeError):
    """``commit`` answered a batch with a result list of another length."""


@dataclass(eq=False)  # hashed by identity: a key of GroupCommit._since
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
        max_queued: int | None = None,
        probe: Callable[[], Awaitable[None]] | None = None,
        probe_interval: float = 1.0,
        drain_timeout: float = 10.0,
        refusal: Callable[[Exception], str | None] | None = None,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        max_queued = 10 * batch_size if max_queued is None else max_queued
        if batch_size < 1 or max_queued < 1:  # asyncio.Queue(maxsize=0) would be unbounded
            raise ValueError(f"{name}: batch_size and max_queued must be at least 1")
        self._commit, self._name, self._batch_size = commit, name, batch_size
        self._failure, self._probe, self._probe_interval = failure, probe, probe_interval
        self._drain_timeout, self._refusal = drain_timeout, refusal
        self._observe = observe  # given each item's wait in seconds, committed or failed
        self._queue: asyncio.Queue[_Waiting[T, R]] = asyncio.Queue(maxsize=max_queued)
        self._writer: asyncio.Task[None] | None = None
        self._batch: list[_Waiting[T, R]] = []
        self._stopping = False
        self._last_batch_failed = False
        self._since: dict[_Waiting[T, R], float] = {}  # submitted, unsettled: when (in order)
        self._failed_batches = 0
        self._refused_items = 0

    @property
    def running(self) -> bool:
        return self._writer is not None and not self._writer.done()

    @property
    def healthy(self) -> bool:
        """Running, and its last batch (or, since, its probe) committed."""
        return self.running and not self._last_batch_failed

    @property
    def waiting(self) -> int:
        """Items submitted and not settled yet (queued, in the batch, or waiting for room)."""
        return len(self._since)

    @property
    def lag(self) -> float:
        """Seconds the oldest unsettled item has waited; 0 when none waits."""
        oldest = next(iter(self._since.values()), None)
        return 0.0 if oldest is None else max(0.0, time.monotonic() - oldest)

    @property
    def failed_batches(self) -> int:
        """Batches that could not be committed since this writer was made."""
        return self._failed_batches

    @property
    def refused_items(self) -> int:
        """Items the store refused for what they hold (``refusal``) since this writer was
        made; their batches' other items were committed."""
        return self._refused_items

    async def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self._name} is already running")
        self._stopping, self._last_batch_failed = False, False
        self._writer = asyncio.create_task(self._run(), name=self._name)
        self._writer.add_done_callback(self._writer_ended)

    async def stop(self) -> None:
        writer = self._writer
        if writer is None:
            return
        self._stopping = True
        if not writer.done():
            await self._drain(writer)
        if not writer.done():
            writer.cancel()
            await asyncio.wait((writer,), timeout=self._drain_timeout)
        if not writer.done():
            log.error("%s: the writer did not end when cancelled; failing its batch", self._name)
        self._fail(self._batch)
        self._fail_queued()
        self._writer = None

    async def submit(self, item: T) -> R:
        """The item's result once its batch committed; ``failure()`` if it could not."""
        writer = self._writer
        if writer is None or writer.done() or self._stopping:
            raise self._failure()
        waiting: _Waiting[T, R] = _Waiting(item, asyncio.get_running_loop().create_future())
        self._since[waiting] = time.monotonic()
        try:
            if self._queue.full():
                await self._wait_for_room(waiting, writer)
            else:
                self._queue.put_nowait(waiting)
            return await waiting.done
        finally:
            submitted = self._since.pop(waiting)
            if self._observe is not None:
                self._observe(time.monotonic() - submitted)

    async def _wait_for_room(self, waiting: _Waiting[T, R], writer: asyncio.Task[None]) -> None:
        put = asyncio.ensure_future(self._queue.put(waiting))
        try:
            await asyncio.wait((put, writer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not put.done():
                put.cancel()
        if not put.done():
            raise self._failure()
        if writer.done():  # it got in as the writer ended: nobody would take it
            self._fail_queued()

    async def _drain(self, writer: asyncio.Task[None]) -> None:
        joined = asyncio.ensure_future(self._queue.join())
        try:
            await asyncio.wait(
                (joined, writer), timeout=self._drain_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            drained = joined.done()
            joined.cancel()
        if not drained and not writer.done():
            log.error(
                "%s: what was queued was not committed within %ss", self._name, self._drain_timeout
            )

    async def _run(self) -> None:
        while True:
            first = await self._next()
            if first is None:
                await self._recheck()
                continue
            self._batch = [first]
            while len(self._batch) < self._batch_size and not self._queue.empty():
                self._batch.append(self._queue.get_nowait())
            try:
                await self._settle(self._batch)
            finally:
                for _ in self._batch:
                    self._queue.task_done()
                self._batch = []

    async def _next(self) -> _Waiting[T, R] | None:
        """The next waiting item; None when it is time to probe an unhealthy writer."""
        if not self._last_batch_failed or self._probe is None:
            return await self._queue.get()
        try:
            async with asyncio.timeout(self._probe_interval):
                return await self._queue.get()
        except TimeoutError:
            return None

    async def _settle(self, batch: list[_Waiting[T, R]]) -> None:
        """Commit ``batch``, or the parts of it that the store does not refuse."""
        groups = [batch]  # a stack: the next group to commit is last
        while groups:
            group = groups.pop()
            try:
                results = await self._commit([waiting.item for waiting in group])
                if len(results) != len(group):
                    raise _ResultCountMismatch(
                        f"{len(results)} results for a batch of {len(group)}"
                    )
            except BaseException as error:
                refused = self._refused(error)
                if refused is None:
                    self._failed(batch, error)
                    return
                if len(group) == 1:
                    self._refuse(group[0], refused)
                else:  # two transactions: the first half, then the second
                    middle = len(group) // 2
                    groups += (group[middle:], group[:middle])
                continue
            if self._last_batch_failed:
                log.warning("%s: batches commit again", self._name)
            self._last_batch_failed = False
            for waiting, result in zip(group, results, strict=True):
                if not waiting.done.done():
                    waiting.done.set_result(result)

    def _refused(self, error: BaseException) -> str | None:
        """``refusal``'s name for ``error``: None unless the store refused an item for
        what it holds (a cancellation or a miscount never is such a refusal)."""
        if self._refusal is None or not isinstance(error, Exception):
            return None
        if isinstance(error, _ResultCountMismatch):
            return None
        return self._refusal(error)

    def _failed(self, batch: list[_Waiting[T, R]], error: BaseException) -> None:
        """The batch could not be committed: every caller not answered yet fails."""
        again = self._last_batch_failed  # the same outage: its traceback is logged already
        self._last_batch_failed = True
        self._failed_batches += 1
        if again:
            log.warning(
                "%s: a batch of %d could not be committed either (%s)",
                self._name,
                len(batch),
                type(error).__name__,
            )
        else:
            log.error(
                "%s: a batch of %d could not be committed", self._name, len(batch), exc_info=error
            )
        self._fail(batch)
        if not _survivable(error):
            raise error

    def _refuse(self, waiting: _Waiting[T, R], refused: str) -> None:
        self._refused_items += 1
        log.warning(
            "%s: the store refused an item for what it holds (%s); it fails alone",
            self._name,
            refused,
        )
        self._fail([waiting])

    async def _recheck(self) -> None:
        if self._probe is None:
            return
        try:
            await self._probe()
        except BaseException as error:
            if not _survivable(error):
                raise
            log.debug("%s: the probe failed too (%s)", self._name, type(error).__name__)
            return
        self._last_batch_failed = False
        log.warning("%s: the write path answers again", self._name)

    def _writer_ended(self, writer: asyncio.Task[None]) -> None:
        error = None if writer.cancelled() else writer.exception()
        if error is not None or not self._stopping:  # only stop() may end it quietly
            log.error(
                "%s: the writer task ended (%s); refusing new work",
                self._name,
                "cancelled" if error is None else type(error).__name__,
                exc_info=error,
            )
        self._fail(self._batch)
        self._fail_queued()

    def _fail_queued(self) -> None:
        while not self._queue.empty():
            waiting = self._queue.get_nowait()
            self._queue.task_done()
            self._fail([waiting])

    def _fail(self, waiters: Iterable[_Waiting[T, R]]) -> None:
        for waiting in waiters:
            if not waiting.done.done():
                waiting.done.set_exception(self._failure())


def _survivable(error: BaseException) -> bool:
    """Whether the writer outlives ``error``: any Exception, and a cancellation that the
    commit raised on its own (nobody asked the writer task itself to stop)."""
    if isinstance(error, asyncio.CancelledError):
        task = asyncio.current_task()
        return task is not None and task.cancelling() == 0
    return isinstance(error, Exception)
