"""Blocking calls grouped per worker-thread call: each caller gets its own result."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from onceonly.adapters._batches import Failed, ThreadBatches


class Doubler:
    """Doubles numbers, recording the batches it saw; held at a gate when asked."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, values: Sequence[int]) -> list[int]:
        self.gate.wait(timeout=5)
        self.batches.append(list(values))
        self.threads.add(threading.current_thread().name)
        if any(value < 0 for value in values):
            raise ValueError("negative")
        return [2 * value for value in values]


def test_answers_each_caller_with_its_own_result_in_few_batches() -> None:
    doubler = Doubler()
    batches = ThreadBatches(doubler, name="doubler")

    async def scenario() -> list[int]:
        doubler.gate.clear()  # the first batch waits: the others queue behind it
        first = asyncio.ensure_future(batches(0))
        await asyncio.sleep(0.01)
        rest = [asyncio.ensure_future(batches(n)) for n in range(1, 50)]
        doubler.gate.set()
        return await asyncio.gather(first, *rest)

    assert asyncio.run(scenario()) == [2 * n for n in range(50)]
    assert doubler.batches == [[0], list(range(1, 50))]
    (thread,) = doubler.threads  # one worker thread of its own, not the loop's
    assert thread.startswith("doubler")
    batches.close()


def test_a_failed_batch_fails_every_caller_in_it_and_the_next_batch_runs() -> None:
    doubler = Doubler()
    batches = ThreadBatches(doubler, name="doubler")

    async def scenario() -> tuple[list[object], int]:
        outcomes = await asyncio.gather(batches(1), batches(-1), return_exceptions=True)
        return outcomes, await batches(5)

    outcomes, later = asyncio.run(scenario())

    assert [type(outcome) for outcome in outcomes] == [ValueError, ValueError]
    assert later == 10


def test_fails_the_batch_when_the_function_answers_another_number_of_results() -> None:
    batches: ThreadBatches[int, int] = ThreadBatches(lambda values: [1], name="short")

    async def scenario() -> list[object]:
        return await asyncio.gather(batches(1), batches(2), return_exceptions=True)

    (first, second) = asyncio.run(scenario())
    assert isinstance(first, RuntimeError)
    assert "1 results for 2 calls" in str(first)
    assert first is second


def test_a_cancelled_caller_leaves_the_others_their_results() -> None:
    doubler = Doubler()
    batches = ThreadBatches(doubler, name="doubler")

    async def scenario() -> list[int]:
        doubler.gate.clear()
        gone, kept = asyncio.ensure_future(batches(1)), asyncio.ensure_future(batches(2))
        await asyncio.sleep(0.01)
        gone.cancel()
        doubler.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return [await kept, await batches(3)]

    assert asyncio.run(scenario()) == [4, 6]


def test_callers_waiting_when_the_loop_stops_are_told() -> None:
    """No caller waits forever: stopping the batches' task fails the waiting calls."""
    doubler = Doubler()
    batches = ThreadBatches(doubler, name="doubler")

    async def scenario() -> object:
        doubler.gate.clear()
        waiting = asyncio.ensure_future(batches(1))
        await asyncio.sleep(0.01)
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task() and task is not waiting:
                task.cancel()
        outcome = await asyncio.gather(waiting, return_exceptions=True)
        doubler.gate.set()
        return outcome[0]

    outcome = asyncio.run(scenario())
    assert isinstance(outcome, RuntimeError)
    assert "doubler was stopped" in str(outcome)


def test_a_failed_result_fails_its_own_caller_alone() -> None:
    """One unreadable row among many: its caller is told, the others get their records."""

    def run(values: Sequence[int]) -> list[int | Failed]:
        return [Failed(ValueError("unreadable")) if v == 13 else v for v in values]

    batches: ThreadBatches[int, int] = ThreadBatches(run, name="rows")

    async def main() -> list[int | BaseException]:
        return await asyncio.gather(*(batches(v) for v in (1, 13, 2)), return_exceptions=True)

    first, failed, second = asyncio.run(main())
    batches.close()
    assert (first, second) == (1, 2)
    assert isinstance(failed, ValueError)


def test_a_base_exception_in_a_batch_leaves_no_caller_waiting_for_ever() -> None:
    """A batch that raises past Exception (a driver's, a stray SystemExit) fails its
    callers, and the worker still answers the next batch."""
    calls: list[list[int]] = []

    def run(values: Sequence[int]) -> list[int]:
        calls.append(list(values))
        if len(calls) == 1:
            raise SystemExit("from the driver")
        return list(values)

    batches: ThreadBatches[int, int] = ThreadBatches(run, name="stopped")

    async def main() -> tuple[BaseException | int, int]:
        (first,) = await asyncio.gather(batches(1), return_exceptions=True)
        return first, await asyncio.wait_for(batches(2), timeout=5)

    first, second = asyncio.run(main())
    batches.close()
    assert isinstance(first, RuntimeError)
    assert second == 2
