"""The report's roll-ups checked against the audit log, and rebuilt from it.

The roll-ups (onceonly.hub.reports.models) are sums over the log's entries
``[0, cursor)``, nothing else: :func:`check_rollups` sums those entries again from
their leaves and compares, one line per key whose stored sum is not theirs (a row
changed, added or deleted by hand or by damage would otherwise show in every report
as if the log said so, while the log itself verifies). :func:`rebuild` empties them,
for the roll-up to add the whole log again.
"""

import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from onceonly.hub.reports import repository
from onceonly.hub.reports.tally import Tally, tally

CHECK_PAGE = 5_000
"""Entries read and summed at a time."""
RECORD_BUDGET = 200_000
"""The distinct records' sums (``report_records`` rows) held at a time, stored and
recomputed each: about 0.4 KB a row on each side. A log that serves more distinct
records is checked in several passes over its entries, each holding the records whose
subject falls in one share (:func:`_share_of`)."""
RECORDS = "report_records"


@dataclass(frozen=True)
class RollupCheck:
    """What :func:`check_rollups` went through, and how many sums it found wrong."""

    entries: int  # the log's entries the roll-ups hold: [0, entries)
    sums: int  # stored rows compared
    wrong: int
    passes: int = 1  # passes over the entries (the records' sums, in shares)


async def check_rollups(
    engine: AsyncEngine,
    *,
    report: Callable[[str], None],
    page: int = CHECK_PAGE,
    budget: int | None = None,
) -> RollupCheck:
    """Compare every stored roll-up row with what the log's entries below the cursor
    add up to, in one snapshot of the database (the roll-up may run meanwhile), and
    ``report`` each difference: a row whose total is not the entries', one they do not
    give (a total of 0 included: the roll-up never stores one), one they give that is
    missing, and a cursor past the log's end (the roll-ups then claim entries that do
    not exist, and would skip the ones appended up to it). Every leaf is read and
    tallied by what it says, whatever the entry's ``action`` column holds.

    At most ``budget`` (:data:`RECORD_BUDGET`) distinct records' sums are held at a
    time on each side, about: with more stored, the entries are read once for each
    share of the subjects, and a share whose entries give more than twice that many is
    read again as two shares. Each share is compared, and reported, before the next."""
    budget = budget or RECORD_BUDGET
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # one snapshot for every statement
            await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            try:
                through, odd_cursor = await repository.cursor(conn), None
            except (ValueError, TypeError) as error:  # SQLite keeps what it is given
                through, odd_cursor = 0, str(error)
            size = await repository.log_size(conn)
            end = min(through, size)
            shares = max(1, -(-(await repository.record_rows(conn)) // budget))
            wrong = _report_cursor(through, size, odd_cursor, report)
            work, others, rows, passes = [(share, shares) for share in range(shares)], None, 0, 0
            while work:
                share, of = work.pop(0)
                summed = await _share_summed(
                    conn, end=end, page=page, share=share, of=of, budget=budget
                )
                passes += 1
                if summed is None:  # too many records in it: two shares of it instead
                    work[0:0] = [(share, 2 * of), (share + of, 2 * of)]
                    continue
                records, tallied = summed
                if others is None:  # the first whole pass: the other roll-ups, reported first
                    others = tallied
                    rows, wrong = await _check_others(conn, others, report, rows, wrong)
                kept = await repository.stored_sums(
                    conn, tables={RECORDS}, keep=_in_share(share, of)
                )
                rows += len(kept[RECORDS])
                keys = repository.TABLE_KEYS[RECORDS]
                wrong += _report(RECORDS, keys, kept[RECORDS], records, report)
    return RollupCheck(entries=end, sums=rows, wrong=wrong, passes=passes)


async def _check_others(
    conn: AsyncConnection, others: Tally, report: Callable[[str], None], rows: int, wrong: int
) -> tuple[int, int]:
    """The roll-ups but the records' compared with ``others``: the rows and the wrong
    ones, added to ``rows`` and ``wrong``."""
    stored = await repository.stored_sums(conn, tables=set(repository.TABLE_KEYS) - {RECORDS})
    expected = repository.tallied(others)
    for table, keys in repository.TABLE_KEYS.items():
        if table != RECORDS:
            rows += len(stored[table])
            wrong += _report(table, keys, stored[table], expected[table], report)
    return rows, wrong


async def _share_summed(
    conn: AsyncConnection, *, end: int, page: int, share: int, of: int, budget: int
) -> tuple[Counter[tuple[str, str, str]], Tally] | None:
    """One pass over the entries ``[0, end)``: the records' sums of those whose subject
    is in ``share`` of ``of`` shares, and the other roll-ups' sums of every entry; None
    as soon as the share holds more than twice ``budget`` records (it is then counted in
    two shares)."""
    kept: Counter[tuple[str, str, str]] = Counter()
    others = Tally()
    for start in range(0, end, page):
        leaves = await repository.leaves_between(conn, start, min(start + page, end), action=None)
        sums = tally(leaves)
        others.exchanges.update(sums.exchanges)
        others.owner_times.update(sums.owner_times)
        kept.update({key: n for key, n in sums.records.items() if _share_of(key[2], of) == share})
        if len(kept) > 2 * budget and of < 2**20:
            return None
    return kept, others


def _share_of(subject: Any, shares: int) -> int:
    """Which of ``shares`` shares a record's subject falls in: by its text as Python
    writes it (a stored row's subject may be of another type on SQLite, and then falls
    wherever it falls, compared in that share with what the entries give)."""
    return zlib.crc32(repr(subject).encode("utf-8", "surrogatepass")) % shares if shares > 1 else 0


def _in_share(share: int, shares: int) -> Callable[[tuple[Any, ...]], bool]:
    return lambda key: _share_of(key[2], shares) == share


def _report_cursor(
    through: int, size: int, odd_cursor: str | None, report: Callable[[str], None]
) -> int:
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
    return wrong


def _report(
    table: str,
    keys: tuple[str, ...],
    stored: Mapping[tuple[Any, ...], Any],
    summed: Mapping[tuple[Any, ...], int],
    report: Callable[[str], None],
) -> int:
    lines = _differences(table, keys, stored, summed)
    for line in lines:
        report(line)
    return len(lines)


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
