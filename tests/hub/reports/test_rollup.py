"""The roll-up worker's own steps (the figures it adds: test_figures, test_scripted_month)."""

import asyncio
import json

from onceonly.hub.reports import rollup
from onceonly.hub.reports.tally import Tally, tally


def _leaf(number: int) -> bytes:
    entry = {
        "action": "record.query",
        "time": f"2026-{number % 12 + 1:02d}-05T10:00:00.000Z",
        "item": "a",
        "department": "c",
        "purpose": "p",
        "outcome": "ok",
        "owner": "o",
        "owner_ms": number % 7,
        "subject": f"s{number % 30}",
    }
    return json.dumps(entry).encode()


def test_a_batch_is_summed_in_steps_that_let_requests_in_between() -> None:
    leaves = [_leaf(number) for number in range(2 * rollup._TALLY_STEP + 50)]
    turns = 0

    async def request_in_flight() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    async def scenario() -> Tally:
        other = asyncio.create_task(request_in_flight())
        await asyncio.sleep(0)
        before = turns
        sums = await rollup._tally_in_steps(leaves)
        steps, _ = turns - before, other.cancel()
        assert steps >= 2  # the loop ran other work between the three steps
        return sums

    sums, whole = asyncio.run(scenario()), tally(leaves)
    assert (sums.exchanges, sums.owner_times, sums.records) == (
        whole.exchanges,
        whole.owner_times,
        whole.records,
    )
    assert sum(sums.exchanges.values()) == 3 * len(leaves)
