"""The group-commit writer: every caller hears how its batch ended; nobody waits forever.

Tier 1: pure asyncio, no database. The commit functions here answer item ``n`` with
``10 * n``. Every wait is bounded by ``asyncio.wait_for`` so that a regression fails
a test instead of hanging the suite.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from onceonly.hub.kit.group_commit import GroupCommit
from onceonly.hub.kit.problems import HubError

from tests.hub.captured_logs import records_of

pytestmark = pytest.mark.anyio

BOUND = 5.0  # seconds: generous; only a hang reaches it
NAME = "test-writer"

Commit = Callable[[list[int]], Awaitable[list[int]]]


class WriterDown(HubError):
    status = 503
    slug = "writer-down"
    title = "Writer down"


def group_commit(commit: Commit, *, batch_size: int = 10, **options: Any) -> GroupCommit[int, int]:
    return GroupCommit(
        commit,
        name=NAME,
        batch_size=batch_size,
        failure=lambda: WriterDown("the test writer failed"),
        **options,
    )


async def tens(batch: list[int]) -> list[int]:
    return [10 * item for item in batch]


def first_batch_fails(error: BaseException) -> Commit:
    batches = 0

    async def commit(batch: list[int]) -> list[int]:
        nonlocal batches
        batches += 1
        if batches == 1:
            raise error
        return await tens(batch)

    return commit


def first_batch_miscounts(extra: int) -> Commit:
    """A commit that answers its first batch with ``extra`` results too many (or few)."""
    batches = 0

    async def commit(batch: list[int]) -> list[int]:
        nonlocal batches
        batches += 1
        results = await tens(batch)
        if batches > 1:
            return results
        return results[: len(batch) + extra] + [0] * max(extra, 0)

    return commit


class Gated:
    """A commit that records its batches and holds each one until ``gate`` opens."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.started = asyncio.Event()

    async def __call__(self, batch: list[int]) -> list[int]:
        self.batches.append(batch)
        self.started.set()
        await self.gate.wait()
        return await tens(batch)


def the_writer_task() -> asyncio.Task[Any]:
    (writer,) = [task for task in asyncio.all_tasks() if task.get_name() == NAME]
    return writer


async def eventually(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), BOUND)


async def settle(*pending: "asyncio.Future[int]") -> list[int | BaseException]:
    return await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), BOUND)


@pytest.fixture
def writer_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with records_of(caplog, "onceonly.group_commit", logging.ERROR) as captured:
        yield captured


@pytest.mark.parametrize(
    "error",
    [RuntimeError("a database blip"), asyncio.CancelledError()],
    ids=["exception", "cancelled-inside"],
)
async def test_a_batch_that_raises_fails_each_caller_and_the_next_batch_commits(
    error: BaseException,
) -> None:
    writer = group_commit(first_batch_fails(error))
    await writer.start()
    outcomes = await settle(*(asyncio.ensure_future(writer.submit(n)) for n in (1, 2, 3)))
    assert [type(outcome) for outcome in outcomes] == [WriterDown] * 3
    assert writer.running
    assert not writer.healthy
    assert await asyncio.wait_for(writer.submit(4), BOUND) == 40
    assert writer.healthy
    await asyncio.wait_for(writer.stop(), BOUND)


async def test_an_outage_logs_its_traceback_once_then_a_line_a_batch_then_its_end(
    writer_warnings: pytest.LogCaptureFixture,
) -> None:
    """A database away for a while fails batch after batch: its traceback once, not
    once per batch (hundreds a second at load)."""
    failures = 3

    async def down_then_up(batch: list[int]) -> list[int]:
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionError("the database is away")
        return await tens(batch)

    writer = group_commit(down_then_up, batch_size=1)
    await writer.start()
    try:
        for n in (1, 2, 3):
            with pytest.raises(WriterDown):
                await asyncio.wait_for(writer.submit(n), BOUND)
        assert await asyncio.wait_for(writer.submit(4), BOUND) == 40
    finally:
        await asyncio.wait_for(writer.stop(), BOUND)
    logged = [
        (r.levelname, r.exc_info is not None, r.getMessage()) for r in writer_warnings.records
    ]
    assert logged == [
        ("ERROR", True, f"{NAME}: a batch of 1 could not be committed"),
        ("WARNING", False, f"{NAME}: a batch of 1 could not be committed either (ConnectionError)"),
        ("WARNING", False, f"{NAME}: a batch of 1 could not be committed either (ConnectionError)"),
        ("WARNING", False, f"{NAME}: batches commit again"),
    ]
    assert writer.failed_batches == 3


@pytest.mark.parametrize("extra", [-1, 1], ids=["too-few", "too-many"])
async def test_a_wrong_number_of_results_fails_the_batch_and_the_writer_goes_on(
    extra: int,
) -> None:
    writer = group_commit(first_batch_miscounts(extra))
    await writer.start()
    outcomes = await settle(*(asyncio.ensure_future(writer.submit(n)) for n in (1, 2, 3)))
    assert [type(outcome) for outcome in outcomes] == [WriterDown] * 3
    assert not writer.healthy
    assert await asyncio.wait_for(writer.submit(4), BOUND) == 40
    assert writer.healthy
    await asyncio.wait_for(writer.stop(), BOUND)


async def test_a_writer_cancelled_from_outside_fails_its_batch_and_queue_and_says_so(
    writer_log: pytest.LogCaptureFixture,
) -> None:
    commit = Gated()  # the gate never opens: batch [1] is in flight, 2 and 3 queued
    writer = group_commit(commit, batch_size=1)
    await writer.start()
    callers = [asyncio.ensure_future(writer.submit(n)) for n in (1, 2, 3)]
    await asyncio.wait_for(commit.started.wait(), BOUND)
    the_writer_task().cancel()
    outcomes = await settle(*callers)
    assert [type(outcome) for outcome in outcomes] == [WriterDown] * 3
    assert not writer.running
    assert not writer.healthy
    with pytest.raises(WriterDown):
        await asyncio.wait_for(writer.submit(4), BOUND)
    await asyncio.wait_for(writer.stop(), BOUND)
    ended = [r for r in writer_log.records if "writer task ended" in r.getMessage()]
    assert {record.levelno for record in ended} == {logging.ERROR}  # reported, not silent


async def test_submit_after_the_writer_died_refuses_at_once() -> None:
    writer = group_commit(tens)
    await writer.start()
    await asyncio.sleep(0)  # the writer waits for work
    task = the_writer_task()
    task.cancel()
    await asyncio.wait((task,), timeout=BOUND)
    with pytest.raises(WriterDown):
        await asyncio.wait_for(writer.submit(1), BOUND)
    await asyncio.wait_for(writer.stop(), BOUND)
    with pytest.raises(WriterDown):
        await asyncio.wait_for(writer.submit(2), BOUND)


async def test_stop_commits_what_is_queued_and_refuses_new_work_meanwhile() -> None:
    commit = Gated()
    writer = group_commit(commit, batch_size=1)
    await writer.start()
    callers = [asyncio.ensure_future(writer.submit(n)) for n in (1, 2, 3)]
    await asyncio.wait_for(commit.started.wait(), BOUND)
    stopping = asyncio.ensure_future(writer.stop())
    await asyncio.sleep(0)
    with pytest.raises(WriterDown):
        await asyncio.wait_for(writer.submit(4), BOUND)
    commit.gate.set()
    await asyncio.wait_for(stopping, BOUND)
    assert await settle(*callers) == [10, 20, 30]
    assert commit.batches == [[1], [2], [3]]
    assert not writer.running


async def test_stop_returns_and_fails_the_callers_when_a_commit_never_ends() -> None:
    commit = Gated()  # the gate never opens
    writer = group_commit(commit, batch_size=1, drain_timeout=0.1)
    await writer.start()
    callers = [asyncio.ensure_future(writer.submit(n)) for n in (1, 2)]
    await asyncio.wait_for(commit.started.wait(), BOUND)
    await asyncio.wait_for(writer.stop(), BOUND)
    outcomes = await settle(*callers)
    assert [type(outcome) for outcome in outcomes] == [WriterDown] * 2
    assert not writer.running


async def test_stop_returns_even_when_the_commit_ignores_cancellation() -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def stubborn(batch: list[int]) -> list[int]:
        entered.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue
        return await tens(batch)

    writer = group_commit(stubborn, drain_timeout=0.1)
    await writer.start()
    caller = asyncio.ensure_future(writer.submit(1))
    await asyncio.wait_for(entered.wait(), BOUND)
    task = the_writer_task()
    await asyncio.wait_for(writer.stop(), BOUND)
    assert [type(outcome) for outcome in await settle(caller)] == [WriterDown]
    release.set()  # let the stubborn writer go, and end it for good
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.wait((task,), timeout=BOUND)
    assert task.done()


async def test_a_full_queue_makes_submitters_wait_for_room() -> None:
    commit = Gated()
    writer = group_commit(commit, batch_size=10, max_queued=2)
    await writer.start()
    first = asyncio.ensure_future(writer.submit(1))
    await asyncio.wait_for(commit.started.wait(), BOUND)  # [1] in flight: the queue is empty
    queued = [asyncio.ensure_future(writer.submit(n)) for n in (2, 3)]  # the queue is full
    waiting = asyncio.ensure_future(writer.submit(4))
    await asyncio.sleep(0.05)
    assert not any(call.done() for call in (first, *queued, waiting))
    commit.gate.set()
    assert await settle(first, *queued, waiting) == [10, 20, 30, 40]
    # 4 got in only once the writer had taken 2 and 3: it could not join their batch.
    assert commit.batches == [[1], [2, 3], [4]]
    await asyncio.wait_for(writer.stop(), BOUND)


async def test_a_submitter_waiting_for_room_is_refused_when_the_writer_dies() -> None:
    commit = Gated()  # the gate never opens
    writer = group_commit(commit, batch_size=1, max_queued=1)
    await writer.start()
    callers = [asyncio.ensure_future(writer.submit(1))]
    await asyncio.wait_for(commit.started.wait(), BOUND)
    callers += [asyncio.ensure_future(writer.submit(n)) for n in (2, 3)]  # 2 queued, 3 waits
    await asyncio.sleep(0.05)
    the_writer_task().cancel()
    outcomes = await settle(*callers)
    assert [type(outcome) for outcome in outcomes] == [WriterDown] * 3
    await asyncio.wait_for(writer.stop(), BOUND)


async def test_the_probe_makes_an_idle_writer_healthy_again_once_the_write_path_answers() -> None:
    answers = False
    probes = 0

    async def probe() -> None:
        nonlocal probes
        probes += 1
        if not answers:
            raise RuntimeError("still down")

    writer = group_commit(first_batch_fails(RuntimeError("down")), probe=probe, probe_interval=0.01)
    await writer.start()
    assert [type(o) for o in await settle(asyncio.ensure_future(writer.submit(1)))] == [WriterDown]
    await eventually(lambda: probes >= 3)
    assert not writer.healthy
    answers = True
    await eventually(lambda: writer.healthy)
    assert await asyncio.wait_for(writer.submit(2), BOUND) == 20
    await asyncio.wait_for(writer.stop(), BOUND)


@pytest.mark.parametrize(("batch_size", "max_queued"), [(1, 0), (0, None), (10, -1)])
def test_a_queue_without_room_is_refused_at_construction(
    batch_size: int, max_queued: int | None
) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        group_commit(tens, batch_size=batch_size, max_queued=max_queued)


# --- an item the store refuses for what it holds (decision 0044) ----------------------


@pytest.fixture
def writer_warnings(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The writer's warnings and errors, once each: caplog's handler on the writer's
    logger only (the hub's logging may stop propagation, writer_log above)."""
    with records_of(caplog, "onceonly.group_commit", logging.WARNING) as captured:
        yield captured


class Refused(Exception):
    """What the test's store raises for a batch holding a negative item (as PostgreSQL
    refuses a value too long for its column); its message names the item."""


def refused_name(error: Exception) -> str | None:
    return "negative" if isinstance(error, Refused) else None


class Store:
    """A commit that refuses any batch holding a negative item, and records the batches
    it was given and those it committed."""

    def __init__(self, *, down_after: int | None = None) -> None:
        self.given: list[list[int]] = []
        self.committed: list[int] = []
        self.down_after = down_after  # commits answered before the store goes down

    async def __call__(self, batch: list[int]) -> list[int]:
        self.given.append(batch)
        if self.down_after is not None and len(self.given) > self.down_after:
            raise RuntimeError("the database is down")
        refused = [item for item in batch if item < 0]
        if refused:
            raise Refused(f"value {refused[0]} refused")
        self.committed += batch
        return await tens(batch)


async def submit_all(writer: GroupCommit[int, int], items: list[int]) -> list[int | BaseException]:
    """Submit ``items`` together, so that the writer takes them as one batch."""
    return await settle(*(asyncio.ensure_future(writer.submit(item)) for item in items))


@pytest.mark.parametrize(
    "items",
    [
        [1, 2, -666, 4, 5],
        [-666, 2, 3, 4, 5, 6, 7, 8],
        [1, 2, 3, 4, 5, 6, 7, -666],
        [-666, 2, -666, 4, 5, -666, -666, 8, 9],
        [-666],
    ],
    ids=["middle", "first", "last", "several", "alone"],
)
async def test_only_the_items_the_store_refuses_fail_and_the_others_commit_in_order(
    items: list[int], writer_warnings: pytest.LogCaptureFixture
) -> None:
    store = Store()
    writer = group_commit(store, refusal=refused_name)
    await writer.start()
    outcomes = await submit_all(writer, items)
    assert [type(o) if n < 0 else o for n, o in zip(items, outcomes, strict=True)] == [
        WriterDown if n < 0 else 10 * n for n in items
    ]
    assert store.committed == [n for n in items if n > 0]  # in order, each once
    assert (writer.healthy, writer.failed_batches) == (True, 0)
    assert writer.refused_items == items.count(-666)
    refusals = [r for r in writer_warnings.records if "refused" in r.getMessage()]
    assert [r.levelno for r in refusals] == [logging.WARNING] * items.count(-666)
    assert "negative" in refusals[0].getMessage()
    assert all("666" not in r.getMessage() for r in writer_warnings.records)  # nor the item
    assert await asyncio.wait_for(writer.submit(11), BOUND) == 110
    await asyncio.wait_for(writer.stop(), BOUND)


async def test_one_refused_item_costs_two_commits_a_halving() -> None:
    store = Store()
    writer = group_commit(store, batch_size=16, refusal=refused_name)
    await writer.start()
    await submit_all(writer, [n if n != 6 else -6 for n in range(1, 17)])
    assert [len(batch) for batch in store.given] == [16, 8, 4, 4, 2, 1, 1, 2, 8]
    await asyncio.wait_for(writer.stop(), BOUND)


async def test_an_error_that_is_no_refusal_fails_the_whole_batch_at_once() -> None:
    """A database that is down is not asked again item by item."""
    store = Store(down_after=0)
    writer = group_commit(store, refusal=refused_name)
    await writer.start()
    outcomes = await submit_all(writer, [1, 2, -3, 4])
    assert [type(o) for o in outcomes] == [WriterDown] * 4
    assert len(store.given) == 1
    assert (writer.healthy, writer.failed_batches, writer.refused_items) == (False, 1, 0)
    await asyncio.wait_for(writer.stop(), BOUND)


async def test_a_store_going_down_while_a_refused_batch_is_split_fails_the_rest_at_once() -> None:
    store = Store(down_after=2)  # the batch (refused), its first half (committed), then down
    writer = group_commit(store, refusal=refused_name)
    await writer.start()
    outcomes = await submit_all(writer, [1, 2, 3, 4, -5, 6, 7, 8])
    assert outcomes[:4] == [10, 20, 30, 40]  # committed before the store went down
    assert [type(o) for o in outcomes[4:]] == [WriterDown] * 4
    assert [len(batch) for batch in store.given] == [8, 4, 4]
    assert (writer.healthy, writer.failed_batches, writer.refused_items) == (False, 1, 0)
    await asyncio.wait_for(writer.stop(), BOUND)


async def test_without_refusal_a_refused_item_fails_its_whole_batch() -> None:
    store = Store()
    writer = group_commit(store)
    await writer.start()
    outcomes = await submit_all(writer, [1, -2, 3])
    assert [type(o) for o in outcomes] == [WriterDown] * 3
    assert (len(store.given), writer.healthy, writer.failed_batches) == (1, False, 1)
    await asyncio.wait_for(writer.stop(), BOUND)


async def test_stop_while_a_refused_batch_is_split_fails_what_is_not_committed() -> None:
    """stop() keeps its bound: a half that never commits is cancelled with the writer."""
    halves = asyncio.Event()

    async def commit(batch: list[int]) -> list[int]:
        if any(item < 0 for item in batch):
            raise Refused("refused")
        halves.set()
        await asyncio.Event().wait()  # the first half never commits
        raise AssertionError("unreachable")

    writer = group_commit(commit, refusal=refused_name, drain_timeout=0.05)
    await writer.start()
    callers = [asyncio.ensure_future(writer.submit(item)) for item in (1, 2, -3, 4)]
    await asyncio.wait_for(halves.wait(), BOUND)
    await asyncio.wait_for(writer.stop(), BOUND)
    assert [type(o) for o in await settle(*callers)] == [WriterDown] * 4


async def test_each_items_wait_is_observed_whether_its_batch_committed_or_failed() -> None:
    waits: list[float] = []

    async def slow_then_down(batch: list[int]) -> list[int]:
        await asyncio.sleep(0.05)
        if 0 in batch:
            raise ConnectionError("the store went away")
        return [10 * item for item in batch]

    writer = group_commit(slow_then_down, batch_size=2, observe=waits.append)
    await writer.start()
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(writer.submit(n) for n in (0, 1, 2)), return_exceptions=True),
            BOUND,
        )
    finally:
        await writer.stop()
    assert isinstance(results[0], WriterDown)
    assert isinstance(results[1], WriterDown)
    assert results[2] == 20
    assert len(waits) == 3  # each item, failed or committed
    assert all(wait >= 0.05 for wait in waits)
    assert max(waits) >= 0.1  # the third waited for the first batch, then its own
