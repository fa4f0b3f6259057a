"""The efficiency report (issue 14, docs/efficiency.md): how much collecting once saves.

:func:`build` is pure: from the roll-ups of one period (onceonly.hub.reports.rollup),
the catalogue and the access requests, it works out every figure, withholds the counts
that :mod:`onceonly.hub.reports.disclosure` says could single out a person, and shows
a figure worked out from counts (a rate, a percentile, minutes saved) only when what it
is formed from is shown or safe. :func:`efficiency_report` reads the inputs and calls it.
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
from onceonly.hub.kit.spreadsheet import neutralize_formula
from onceonly.hub.reports import disclosure, periods, repository
from onceonly.hub.reports.disclosure import Cell, Relation
from onceonly.hub.reports.repository import ExchangeRow, RequestRow
from onceonly.hub.reports.rollup import Rollup
from onceonly.hub.reports.schemas import (
    ConsumerFigures,
    EfficiencyReport,
    ItemFigures,
    OwnerFigures,
    TotalFigures,
)

# Owner failures that count against its availability (as the OnceonlyOwnerDown alert).
OWNER_DOWN_REASONS = frozenset({"owner-unavailable", "owner-timeout", "owner-invalid-response"})
QUERY_COUNTS = ("exchanges", "refused", "failed")
REQUEST_COUNTS = ("requests_decided", "requests_on_time", "requests_pending", "requests_overdue")
# A 95th percentile of fewer calls is nearly the slowest single call.
P95_MIN_CALLS = 20
TOTAL = "total"


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

    def counts(self) -> dict[str, int]:
        return {"exchanges": self.exchanges, "refused": self.refused, "failed": self.failed}


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


@dataclass(frozen=True)
class _Decisions:
    decided: int
    on_time: int
    pending: int
    overdue: int
    waits: tuple[float, ...]  # hours from request to decision

    @classmethod
    def of(cls, requests: list[RequestRow], *, now: datetime) -> "_Decisions":
        decided = [r for r in requests if r.status in ("approved", "refused") and r.decided_at]
        pending = [r for r in requests if r.status == "pending"]
        return cls(
            decided=len(decided),
            on_time=sum(
                1 for r in decided if r.decided_at and aware(r.decided_at) <= aware(r.answer_due)
            ),
            pending=len(pending),
            overdue=sum(1 for r in pending if aware(r.answer_due) < now),
            waits=tuple(
                (aware(r.decided_at) - aware(r.requested_at)).total_seconds() / 3600
                for r in decided
                if r.decided_at is not None
            ),
        )

    def counts(self) -> dict[str, int]:
        return {
            "requests_decided": self.decided,
            "requests_on_time": self.on_time,
            "requests_pending": self.pending,
            "requests_overdue": self.overdue,
        }


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


@dataclass
class _Rows:
    """Every row's raw sums, keyed ``total``, ``item:<id>``, ``owner:<id>``, ``consumer:<id>``."""

    sums: dict[str, _Sums]
    decisions: dict[str, _Decisions]
    owner_items: dict[str, list[str]]  # owner key -> its item keys


def _gather(
    inputs: Inputs, *, now: datetime, minutes_saved: Mapping[str, float], minutes_default: float
) -> _Rows:
    sums: dict[str, _Sums] = {TOTAL: _Sums()}
    owner_items: dict[str, list[str]] = defaultdict(list)
    for item, (_, owner) in sorted(inputs.items.items()):
        sums[f"item:{item}"] = _Sums()
        sums.setdefault(f"owner:{owner}", _Sums())
        owner_items[f"owner:{owner}"].append(f"item:{item}")
    for row in inputs.exchanges:
        minutes = minutes_saved.get(row.item, minutes_default)
        keys = [TOTAL]
        if row.item in inputs.items:
            keys += [f"item:{row.item}", f"owner:{inputs.items[row.item][1]}"]
        if row.consumer in inputs.departments:
            keys.append(f"consumer:{row.consumer}")
        for key in keys:
            sums.setdefault(key, _Sums()).add_query(row, minutes)
    for item, times in inputs.owner_times.items():
        sums[TOTAL].add_times(times)
        if item in inputs.items:
            sums[f"item:{item}"].add_times(times)
            sums[f"owner:{inputs.items[item][1]}"].add_times(times)
    for item, count in inputs.records.items():
        sums[TOTAL].records += count
        if item in inputs.items:
            sums[f"item:{item}"].records += count
            sums[f"owner:{inputs.items[item][1]}"].records += count
    by_owner: dict[str, list[RequestRow]] = defaultdict(list)
    for request in inputs.requests:
        by_owner[f"owner:{request.owner}"].append(request)
    decisions = {key: _Decisions.of(by_owner.get(key, []), now=now) for key in owner_items}
    decisions[TOTAL] = _Decisions.of(inputs.requests, now=now)
    return _Rows(sums=sums, decisions=decisions, owner_items=dict(owner_items))


def _withheld(rows: _Rows, threshold: int) -> set[Cell]:
    """Every count cell of the report, and which of them disclosure control withholds."""
    counts: dict[Cell, int] = {}
    for key, sums in rows.sums.items():
        counts.update({(key, name): n for name, n in sums.counts().items()})
        if not key.startswith("consumer:"):
            counts[(key, "records")] = sums.records
    complements: dict[Cell, int] = {}
    for key, decided in rows.decisions.items():
        counts.update({(key, name): n for name, n in decided.counts().items()})
        complements[(key, "requests_on_time")] = decided.decided - decided.on_time
        complements[(key, "requests_overdue")] = decided.pending - decided.overdue
    keys = {
        kind: [k for k in rows.sums if k.startswith(kind)]
        for kind in ("item:", "owner:", "consumer:")
    }
    relations = []
    for figure in (*QUERY_COUNTS, "records", *REQUEST_COUNTS):
        lists = [keys["owner:"]]
        if figure in (*QUERY_COUNTS, "records"):
            lists.append(keys["item:"])
            for owner, items in rows.owner_items.items():
                relations.append(Relation(figure, owner, tuple(items)))
        if figure in QUERY_COUNTS:
            lists.append(keys["consumer:"])
        for children in lists:
            known = sum(counts.get((child, figure), 0) for child in children)
            rest = counts[(TOTAL, figure)] - known
            relations.append(Relation(figure, TOTAL, tuple(children), rest))
    return disclosure.withheld(
        counts, complements=complements, relations=relations, threshold=threshold
    )


def _publish(key: str, rows: _Rows, hidden: set[Cell], threshold: int) -> dict[str, Any]:
    """One row's published figures: counts not withheld, and what is worked out from
    shown counts only."""
    sums = rows.sums[key]
    out: dict[str, Any] = {}
    names: list[str] = []

    def shown(name: str, value: Any, visible: bool) -> None:
        out[name] = value if visible else None
        if not visible and value is not None:
            names.append(name)

    def visible(name: str) -> bool:
        return (key, name) not in hidden

    for name, value in sums.counts().items():
        shown(name, value, visible(name))
    exchanges_shown = visible("exchanges")
    if key.startswith("consumer:"):
        shown("items", len(sums.items), exchanges_shown)
        out["suppressed"] = sorted(names)
        return out
    shown("records", sums.records, visible("records"))
    shown(
        "exchanges_per_record",
        round(sums.exchanges / sums.records, 2) if sums.records else None,
        exchanges_shown and visible("records"),
    )
    parts = (
        [key]
        if key.startswith("item:")
        else (
            rows.owner_items.get(key, [])
            if key.startswith("owner:")
            else [k for k in rows.sums if k.startswith("item:")]
        )
    )
    shown(
        "minutes_saved",
        round(sums.minutes, 1),
        exchanges_shown and all((part, "exchanges") not in hidden for part in parts),
    )
    shown("consumers", len(sums.consumers), exchanges_shown)
    timed = sum(sums.times.values())
    shown("owner_p50_ms", percentile(sums.times, 50), timed >= threshold)
    shown("owner_p95_ms", percentile(sums.times, 95), timed >= max(P95_MIN_CALLS, threshold))
    queries = sums.exchanges + sums.refused + sums.failed
    shown(
        "error_rate",
        round(sums.failed / queries, 4) if queries else None,
        all(visible(name) for name in QUERY_COUNTS),
    )
    answered = sums.reached - sums.owner_down
    shown(
        "owner_availability",
        round(answered / sums.reached, 4) if sums.reached else None,
        sums.reached >= threshold
        and not disclosure.small(sums.owner_down, threshold)
        and not disclosure.small(answered, threshold),
    )
    if key in rows.decisions:
        decided = rows.decisions[key]
        for name, value in decided.counts().items():
            shown(name, value, visible(name))
        shown(
            "on_time_share",
            round(decided.on_time / decided.decided, 4) if decided.decided else None,
            visible("requests_decided") and visible("requests_on_time"),
        )
        shown(
            "decision_median_hours",
            round(statistics.median(decided.waits), 2) if decided.waits else None,
            visible("requests_decided"),
        )
    out["suppressed"] = sorted(names)
    return out


def build(
    inputs: Inputs,
    *,
    now: datetime,
    threshold: int,
    minutes_saved: Mapping[str, float],
    minutes_default: float,
) -> EfficiencyReport:
    rows = _gather(inputs, now=now, minutes_saved=minutes_saved, minutes_default=minutes_default)
    hidden = _withheld(rows, threshold)

    def published(key: str) -> dict[str, Any]:
        return _publish(key, rows, hidden, threshold)

    items = [
        ItemFigures.model_validate(
            {"item": item, "title": title, "owner": owner, **published(f"item:{item}")}
        )
        for item, (title, owner) in sorted(inputs.items.items())
    ]
    owners = [
        OwnerFigures.model_validate(
            {
                "department": key.removeprefix("owner:"),
                "name": inputs.departments.get(key.removeprefix("owner:"), key),
                **published(key),
            }
        )
        for key in sorted(rows.owner_items)
    ]
    consumers = [
        ConsumerFigures.model_validate(
            {
                "department": key.removeprefix("consumer:"),
                "name": inputs.departments[key.removeprefix("consumer:")],
                **published(key),
            }
        )
        for key in sorted(k for k in rows.sums if k.startswith("consumer:"))
    ]
    return EfficiencyReport(
        period=inputs.period.name,
        start=inputs.period.start,
        end=inputs.period.end,
        generated_at=now,
        log_entries=inputs.progress.through,
        log_size=inputs.progress.log_size,
        threshold=threshold,
        total=TotalFigures.model_validate(published(TOTAL)),
        items=items,
        owners=owners,
        consumers=consumers,
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


# Decimal places of each worked-out figure in the export (docs/efficiency.md).
_DECIMALS = {
    "exchanges_per_record": 2,
    "minutes_saved": 1,
    "error_rate": 4,
    "owner_availability": 4,
    "on_time_share": 4,
    "decision_median_hours": 2,
}
# Titles and names come from stewards and administrators: a spreadsheet must not run them.
_TEXT = ("id", "name", "owner")


def _cell(column: str, value: Any) -> Any:
    if value is None:
        return ""
    if column in _DECIMALS:
        return f"{value:.{_DECIMALS[column]}f}"
    if column in _TEXT and isinstance(value, str):
        return neutralize_formula(value)
    return value


def export_rows(report: EfficiencyReport) -> list[dict[str, Any]]:
    """One row for the total, then each item, owner and consumer department; a cell
    is empty where the figure is withheld (``suppressed`` names it) or does not apply."""
    rows: list[dict[str, Any]] = [
        {**report.total.model_dump(), "scope": "total", "id": "", "name": "", "owner": ""}
    ]
    rows += [
        {**item.model_dump(), "scope": "item", "id": item.item, "name": item.title}
        for item in report.items
    ]
    rows += [
        {**owner.model_dump(), "scope": "owner", "id": owner.department, "owner": ""}
        for owner in report.owners
    ]
    rows += [
        {**consumer.model_dump(), "scope": "consumer", "id": consumer.department, "owner": ""}
        for consumer in report.consumers
    ]
    out = []
    for row in rows:
        cells = {column: _cell(column, row.get(column)) for column in EXPORT_COLUMNS}
        cells["period"] = report.period
        cells["suppressed"] = " ".join(row.get("suppressed", []))
        out.append(cells)
    return out
