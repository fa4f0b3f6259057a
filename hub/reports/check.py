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
from onceonly.hub.reports.tally import Tally, tally

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
    ``report`` each difference: a row whose total is not the entries', one they do not
    give (a total of 0 included: the roll-up never stores one), one they give that is
    missing, and a cursor past the log's end (the roll-ups then claim entries that do
    not exist, and would skip the ones appended up to it). Every leaf is read and
    tallied by what it says, whatever the entry's ``action`` column holds."""
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # one snapshot for every statement
            await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            try:
                through, odd_cursor = await repository.cursor(conn), None
            except (ValueError, TypeError) as error:  # SQLite keeps what it is given
                through, odd_cursor = 0, str(error)
            size = await repository.log_size(conn)
            stored = await repository.stored_sums(conn)
            expected = Tally()
            for start in range(0, min(through, size), page):
                end = min(start + page, through, size)
                expected.add(tally(await repository.leaves_between(conn, start, end, action=None)))
    wrong = 0
    if odd_cursor is not None:
        report(f"report roll-up report_cursor: it holds no number of entries ({odd_cursor})")
        wrong += 1
    if through > size:
        report(
            f"report roll-up report_cursor: it says the roll-ups hold the log's first"
            f" {through} entries, but the log has {size}"
        )
        wrong += 1
    summed = repository.tallied(expected)
    for table, keys in repository.TABLE_KEYS.items():
        for line in _differences(table, keys, stored[table], summed[table]):
            report(line)
            wrong += 1
    rows = sum(len(table) for table in stored.values())
    return RollupCheck(entries=min(through, size), sums=rows, wrong=wrong)


def _differences(
    table: str,
    keys: tuple[str, ...],
    stored: Mapping[tuple[Any, ...], Any],
    summed: Mapping[tuple[Any, ...], int],
) -> list[str]:
    """One line per key whose stored total is not the summed one, in key order; only
    the differing keys are sorted."""
    differing = [key for key, total in stored.items() if summed.get(key) != total]
    differing += [key for key in summed if key not in stored]
    lines = []
    for key in sorted(differing, key=repr):
        named = " ".join(f"{name}={value!r}" for name, value in zip(keys, key, strict=True))
        kept = f"{stored[key]!r} stored" if key in stored else "no row stored"
        lines.append(
            f"report roll-up {table} ({named}): {kept}, the log's entries add up to"
            f" {summed.get(key, 0)}"
        )
    return lines


async def rebuild(engine: AsyncEngine) -> None:
    """Empty the roll-ups and their cursor in one transaction: the next catch-up (the
    hub's worker, a report, :class:`onceonly.hub.reports.rollup.Rollup`) adds the log
    from its first entry. A batch another replica is adding meanwhile fails its
    compare-and-set on the cursor and is rolled back, so nothing is added twice."""
    async with engine.begin() as conn:
        await repository.empty(conn)
