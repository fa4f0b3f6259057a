"""The report's roll-ups checked against the audit log, and rebuilt from it.

The roll-ups (onceonly.hub.reports.models) are sums over the log's entries
``[0, cursor)``, nothing else: :func:`check_rollups` sums those entries again from
their leaves and compares, one line per key whose stored sum is not theirs (a row
changed, added or deleted by hand or by damage would otherwise show in every report
as if the log said so, while the log itself verifies). :func:`rebuild` empties them,
for the roll-up to add the whole log again.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from onceonly.hub.reports import repository
from onceonly.hub.reports.tally import ACTION, Tally, tally

CHECK_PAGE = 5_000
"""Entries read and summed at a time."""


@dataclass(frozen=True)
class RollupCheck:
    """What :func:`check_rollups` went through, and how many sums it found wrong."""

    entries: int  # the log's entries the roll-ups hold: [0, entries)
    sums: int  # stored rows compared
    wrong: int


async def check_rollups(
    engine: AsyncEngine, *, report: Callable[[str], None], page: int = CHECK_PAGE
) -> RollupCheck:
    """Compare every stored roll-up row with what the log's entries below the cursor
    add up to, in one snapshot of the database (the roll-up may run meanwhile), and
    ``report`` each difference."""
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # one snapshot for every statement
            await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            through = await repository.cursor(conn)
            stored = await repository.stored_sums(conn)
            expected = Tally()
            for start in range(0, through, page):
                end = min(start + page, through)
                expected.add(
                    tally(await repository.leaves_between(conn, start, end, action=ACTION))
                )
    wrong = 0
    for table, keys, kept, summed in (
        ("report_exchanges", repository.EXCHANGE_KEYS, stored.exchanges, expected.exchanges),
        (
            "report_owner_times",
            repository.OWNER_TIME_KEYS,
            stored.owner_times,
            expected.owner_times,
        ),
        ("report_records", repository.RECORD_KEYS, stored.records, expected.records),
    ):
        for line in _differences(table, keys, kept, summed):
            report(line)
            wrong += 1
    rows = len(stored.exchanges) + len(stored.owner_times) + len(stored.records)
    return RollupCheck(entries=through, sums=rows, wrong=wrong)


def _differences(
    table: str,
    keys: tuple[str, ...],
    stored: Mapping[tuple[Any, ...], int],
    summed: Mapping[tuple[Any, ...], int],
) -> list[str]:
    lines = []
    for key in sorted(set(stored) | set(summed), key=repr):
        if stored.get(key, 0) != summed.get(key, 0):
            named = " ".join(f"{name}={value!r}" for name, value in zip(keys, key, strict=True))
            lines.append(
                f"report roll-up {table} ({named}): {stored.get(key, 0)} stored, "
                f"the log's entries add up to {summed.get(key, 0)}"
            )
    return lines


async def rebuild(engine: AsyncEngine) -> None:
    """Empty the roll-ups and their cursor in one transaction: the next catch-up (the
    hub's worker, a report, :class:`onceonly.hub.reports.rollup.Rollup`) adds the log
    from its first entry. A batch another replica is adding meanwhile fails its
    compare-and-set on the cursor and is rolled back, so nothing is added twice."""
    async with engine.begin() as conn:
        await repository.empty(conn)
