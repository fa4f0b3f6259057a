"""The efficiency report (issue 14, docs/efficiency.md): how much collecting once saves.

:func:`build` is pure: from the roll-ups of one period (onceonly.hub.reports.rollup),
the catalogue and the access requests, it works out every figure and then suppresses
the small ones (:func:`suppress`). :func:`efficiency_report` reads those and calls it.

Suppression: a figure that counts record queries, records or access requests and
counts fewer than ``threshold`` (but more than none) is withheld, and so is every
figure worked out from such a count (a percentile of three calls, a rate of two
queries). Where a list (items, owners, consumers) withholds a figure in exactly one
row while the total shows it, the smallest shown value of another row is withheld
too, so that no withheld figure is the total minus the others.
"""

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from onceonly.hub.kit.clock import aware
from onceonly.hub.reports import periods, repository
from onceonly.hub.reports.repository import ExchangeRow, RequestRow
from onceonly.hub.reports.rollup import Rollup
from onceonly.hub.reports.schemas import (
    ConsumerFigures,
    EfficiencyReport,
    ItemFigures,
    OwnerFigures,
    TotalFigures,
)

OWNER_DOWN_REASONS = frozenset({"owner-unavailable", "owner-timeout"})
# Figures that count queries, records or requests: withheld when 1 <= n < threshold.
COUNTS = (
    "exchanges",
    "refused",
    "failed",
    "records",
    "requests_decided",
    "requests_on_time",
    "requests_pending",
    "requests_overdue",
)
# Worked-out figures and the count each rests on (the base need not be published).
DERIVED = {
    "exchanges_per_record": ("records", "exchanges"),
    "minutes_saved": ("exchanges",),
    "owner_p50_ms": ("_timed",),
    "owner_p95_ms": ("_timed",),
    "error_rate": ("_queries",),
    "owner_availability": ("_reached",),
    "on_time_share": ("requests_decided",),
    "decision_median_hours": ("requests_decided",),
}


@dataclass
class _Sums:
    """Raw sums for one row, before anything is worked out or withheld."""

    exchanges: int = 0
    refused: int = 0
    failed: int = 0
    reached: int = 0
    owner_down: int = 0
    records: int = 0
    minutes: float = 0.0
    consumers: set[str] = field(default_factory=set)
    items: set[str] = field(default_factory=set)
    times: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    def add_query(self, row: ExchangeRow, minutes: float) -> None:
        if row.outcome == "ok":
            self.exchanges += row.queries
            self.minutes += row.queries * minutes
            if row.consumer:
                self.consumers.add(row.consumer)
            self.items.add(row.item)
        elif row.outcome == "refused":
            self.refused += row.queries
        else:
            self.failed += row.queries
        if row.reached:
            self.reached += row.queries
            if row.reason in OWNER_DOWN_REASONS:
                self.owner_down += row.queries

    def add_times(self, times: Iterable[tuple[int, int]]) -> None:
        for ms, calls in times:
            self.times[ms] += calls

    def figures(self) -> dict[str, Any]:
        queries = self.exchanges + self.refused + self.failed
        timed = sum(self.times.values())
        return {
            "exchanges": self.exchanges,
            "refused": self.refused,
            "failed": self.failed,
            "records": self.records,
            "exchanges_per_record": (
                round(self.exchanges / self.records, 2) if self.records else None
            ),
            "minutes_saved": round(self.minutes, 1),
            "owner_p50_ms": percentile(self.times, 50),
            "owner_p95_ms": percentile(self.times, 95),
            "error_rate": round(self.failed / queries, 4) if queries else None,
            "owner_availability": (
                round((self.reached - self.owner_down) / self.reached, 4) if self.reached else None
            ),
            "_queries": queries,
            "_timed": timed,
            "_reached": self.reached,
        }


def percentile(counts: Mapping[int, int], p: float) -> int | None:
    """The nearest-rank ``p``-th percentile of values given as ``{value: how many}``."""
    total = sum(counts.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(p / 100 * total))
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= rank:
            return value
    raise AssertionError("unreachable")


def _decisions(requests: list[RequestRow], *, now: datetime) -> dict[str, Any]:
    decided = [r for r in requests if r.status in ("approved", "refused") and r.decided_at]
    waits = [
        (aware(r.decided_at) - aware(r.requested_at)).total_seconds() / 3600
        for r in decided
        if r.decided_at is not None
    ]
    on_time = sum(1 for r in decided if r.decided_at and aware(r.decided_at) <= aware(r.answer_due))
    pending = [r for r in requests if r.status == "pending"]
    return {
        "requests_decided": len(decided),
        "requests_on_time": on_time,
        "on_time_share": round(on_time / len(decided), 4) if decided else None,
        "decision_median_hours": round(statistics.median(waits), 2) if waits else None,
        "requests_pending": len(pending),
        "requests_overdue": sum(1 for r in pending if aware(r.answer_due) < now),
    }


def suppress(row: dict[str, Any], threshold: int) -> dict[str, Any]:
    """``row`` with small counts, and what is worked out from them, withheld (None)."""
    small = {
        name
        for name in (*COUNTS, "_queries", "_timed", "_reached")
        if isinstance(row.get(name), int) and 0 < row[name] < threshold
    }
    withheld = {name for name in small if name in row and not name.startswith("_")}
    withheld |= {
        name for name, bases in DERIVED.items() if name in row and any(b in small for b in bases)
    }
    out = {name: value for name, value in row.items() if not name.startswith("_")}
    for name in withheld:
        out[name] = None
    out["suppressed"] = sorted(withheld)
    return out


def _protect(rows: list[dict[str, Any]], total: dict[str, Any]) -> None:
    """Secondary suppression: no withheld count may be the total minus the others."""
    for name in COUNTS:
        if total.get(name) is None:
            continue
        hidden = [row for row in rows if name in row.get("suppressed", ())]
        shown = [row for row in rows if isinstance(row.get(name), int) and row[name] > 0]
        if len(hidden) == 1 and shown:
            smallest = min(shown, key=lambda row: row[name])
            smallest[name] = None
            smallest["suppressed"] = sorted({*smallest["suppressed"], name})
            for derived, bases in DERIVED.items():
                if name in bases and derived in smallest:
                    smallest[derived] = None
                    smallest["suppressed"] = sorted({*smallest["suppressed"], derived})


@dataclass(frozen=True)
class Inputs:
    """What one report is built from."""

    period: periods.Period
    exchanges: list[ExchangeRow]
    owner_times: dict[str, list[tuple[int, int]]]
    records: dict[str, int]
    items: dict[str, tuple[str, str]]  # id -> (title, owner)
    departments: dict[str, str]  # id -> name
    requests: list[RequestRow]
    progress: repository.Progress


def build(
    inputs: Inputs,
    *,
    now: datetime,
    threshold: int,
    minutes_saved: Mapping[str, float],
    minutes_default: float,
) -> EfficiencyReport:
    per_item: dict[str, _Sums] = {item: _Sums() for item in inputs.items}
    per_owner: dict[str, _Sums] = {owner: _Sums() for _, owner in inputs.items.values()}
    per_consumer: dict[str, _Sums] = {}
    total = _Sums()
    for row in inputs.exchanges:
        minutes = minutes_saved.get(row.item, minutes_default)
        total.add_query(row, minutes)
        if row.item in inputs.items:
            per_item[row.item].add_query(row, minutes)
            per_owner[inputs.items[row.item][1]].add_query(row, minutes)
        if row.consumer in inputs.departments:
            per_consumer.setdefault(row.consumer, _Sums()).add_query(row, minutes)
    for item, times in inputs.owner_times.items():
        total.add_times(times)
        if item in inputs.items:
            per_item[item].add_times(times)
            per_owner[inputs.items[item][1]].add_times(times)
    for item, count in inputs.records.items():
        total.records += count
        if item in inputs.items:
            per_item[item].records += count
            per_owner[inputs.items[item][1]].records += count

    by_owner: dict[str, list[RequestRow]] = defaultdict(list)
    for request in inputs.requests:
        by_owner[request.owner].append(request)

    total_row = suppress(
        {
            **total.figures(),
            "consumers": len(total.consumers),
            **_decisions(inputs.requests, now=now),
        },
        threshold,
    )
    items = [
        suppress(
            {
                "item": item,
                "title": inputs.items[item][0],
                "owner": inputs.items[item][1],
                **sums.figures(),
                "consumers": len(sums.consumers),
            },
            threshold,
        )
        for item, sums in sorted(per_item.items())
    ]
    owners = [
        suppress(
            {
                "department": owner,
                "name": inputs.departments.get(owner, owner),
                **sums.figures(),
                "consumers": len(sums.consumers),
                **_decisions(by_owner.get(owner, []), now=now),
            },
            threshold,
        )
        for owner, sums in sorted(per_owner.items())
    ]
    consumers = []
    for department, sums in sorted(per_consumer.items()):
        figures = sums.figures()
        consumers.append(
            suppress(
                {
                    "department": department,
                    "name": inputs.departments[department],
                    "exchanges": figures["exchanges"],
                    "refused": figures["refused"],
                    "failed": figures["failed"],
                    "items": len(sums.items),
                    "minutes_saved": figures["minutes_saved"],
                },
                threshold,
            )
        )
    for rows in (items, owners, consumers):
        _protect(rows, total_row)
    return EfficiencyReport(
        period=inputs.period.name,
        start=inputs.period.start,
        end=inputs.period.end,
        generated_at=now,
        log_entries=inputs.progress.through,
        log_size=inputs.progress.log_size,
        threshold=threshold,
        total=TotalFigures.model_validate(total_row),
        items=[ItemFigures.model_validate(row) for row in items],
        owners=[OwnerFigures.model_validate(row) for row in owners],
        consumers=[ConsumerFigures.model_validate(row) for row in consumers],
    )


async def efficiency_report(
    engine: AsyncEngine,
    *,
    rollup: Rollup,
    period: periods.Period,
    now: datetime,
    threshold: int,
    minutes_saved: Mapping[str, float],
    minutes_default: float,
    catch_up_budget: float = 1.0,
) -> EfficiencyReport:
    """The report of ``period``, counting every entry committed before it was asked for
    (unless the roll-ups are further behind than ``catch_up_budget`` seconds of work:
    then ``log_entries`` < ``log_size`` says how far it counts)."""
    caught_up = await rollup.catch_up(budget=catch_up_budget)
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # one snapshot: the figures and the cursor agree
            await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():  # SQLite (WAL): a read transaction is one snapshot too
            inputs = await _inputs(conn, period, log_size=caught_up.log_size)
    return build(
        inputs,
        now=now,
        threshold=threshold,
        minutes_saved=minutes_saved,
        minutes_default=minutes_default,
    )


async def _inputs(conn: AsyncConnection, period: periods.Period, *, log_size: int) -> Inputs:
    through = await repository.cursor(conn)
    items, departments = await repository.catalogue(conn)
    return Inputs(
        period=period,
        exchanges=await repository.exchanges(conn, period.name),
        owner_times=await repository.owner_times(conn, period.name),
        records=await repository.distinct_records(conn, period.name),
        items=items,
        departments=departments,
        requests=await repository.access_requests(conn, start=period.start, end=period.end),
        progress=repository.Progress(through=through, log_size=max(log_size, through)),
    )


# --- the open-data export (docs/efficiency.md, "Column dictionary") ----------------

EXPORT_COLUMNS = (
    "period",
    "scope",
    "id",
    "name",
    "owner",
    "exchanges",
    "refused",
    "failed",
    "records",
    "exchanges_per_record",
    "minutes_saved",
    "owner_p50_ms",
    "owner_p95_ms",
    "error_rate",
    "owner_availability",
    "consumers",
    "items",
    "requests_decided",
    "requests_on_time",
    "on_time_share",
    "decision_median_hours",
    "requests_pending",
    "requests_overdue",
    "suppressed",
)


def export_rows(report: EfficiencyReport) -> list[dict[str, Any]]:
    """One row for the total, then each item, owner and consumer department; a cell
    is empty where the figure is suppressed (``suppressed`` names it) or does not apply."""
    rows: list[dict[str, Any]] = []
    total = report.total.model_dump()
    rows.append({**total, "scope": "total", "id": "", "name": "", "owner": ""})
    for item in report.items:
        fields = item.model_dump()
        rows.append({**fields, "scope": "item", "id": item.item, "name": item.title})
    for owner in report.owners:
        fields = owner.model_dump()
        rows.append({**fields, "scope": "owner", "id": owner.department, "owner": ""})
    for consumer in report.consumers:
        fields = consumer.model_dump()
        rows.append({**fields, "scope": "consumer", "id": consumer.department, "owner": ""})
    out = []
    for row in rows:
        cells = {column: row.get(column) for column in EXPORT_COLUMNS}
        cells["period"] = report.period
        cells["suppressed"] = " ".join(row.get("suppressed", []))
        out.append({k: "" if v is None else v for k, v in cells.items()})
    return out
