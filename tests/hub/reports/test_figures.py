"""Tier 1: the efficiency report's pure parts (periods, tallies, percentiles, suppression)."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from onceonly.hub.reports import disclosure, periods, service
from onceonly.hub.reports.disclosure import Relation
from onceonly.hub.reports.repository import ExchangeRow, Progress, RequestRow
from onceonly.hub.reports.tally import tally


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026-11", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("2026-Q4", datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("2026-Q1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
        ("2026", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_a_period_is_a_half_open_utc_interval(text: str, start: datetime, end: datetime) -> None:
    period = periods.parse(text)
    assert (period.name, period.start, period.end) == (text, start, end)


@pytest.mark.parametrize(
    "text",
    ["2026-13", "2026-00", "2026-Q5", "26-11", "2026-1", "1969", "9999", "", "2026-11 ", "x"],
)
def test_a_bad_period_is_refused(text: str) -> None:
    with pytest.raises(periods.BadPeriod):
        periods.parse(text)


def test_an_entry_counts_in_its_month_quarter_and_year() -> None:
    assert periods.keys_of("2026-11-30T23:59:59.999Z") == ("2026-11", "2026-Q4", "2026")
    assert periods.keys_of("2027-01-01T00:00:00.000Z") == ("2027-01", "2027-Q1", "2027")


def _leaf(**members: object) -> bytes:
    entry = {"v": 2, "action": "record.query", "time": "2026-11-05T10:00:00.000Z", **members}
    return json.dumps(entry).encode()


def test_tally_counts_record_queries_only_and_each_once_per_period() -> None:
    leaves = [
        _leaf(
            item="a",
            department="c",
            purpose="p",
            outcome="ok",
            owner="o",
            owner_ms=12,
            subject="s1",
        ),
        _leaf(
            item="a",
            department="c",
            purpose="p",
            outcome="ok",
            owner="o",
            owner_ms=12,
            subject="s1",
        ),
        _leaf(item="a", department="c", purpose="p", outcome="refused", reason="no-grant"),
        _leaf(item="a", action="token.issue", outcome="ok"),
        b"not json",
        _leaf(item="a", outcome="ok", time=17),  # no usable time: passed over
    ]
    sums = tally(leaves)
    assert sums.exchanges[("2026-11", "a", "c", "p", "ok", "", True)] == 2
    assert sums.exchanges[("2026-Q4", "a", "c", "p", "ok", "", True)] == 2
    assert sums.exchanges[("2026", "a", "c", "p", "refused", "no-grant", False)] == 1
    assert sum(sums.exchanges.values()) == 3 * 3
    assert sums.owner_times[("2026-11", "a", 12)] == 2
    assert sums.records[("2026-11", "a", "s1")] == 2


@pytest.mark.parametrize(
    ("counts", "p", "expected"),
    [
        ({}, 50, None),
        ({7: 1}, 50, 7),
        ({7: 1}, 95, 7),
        ({1: 1, 2: 1, 3: 1, 4: 1}, 50, 2),  # nearest rank: ceil(0.5 * 4) = 2nd
        ({1: 1, 2: 1, 3: 1, 4: 1}, 95, 4),
        ({10: 19, 500: 1}, 95, 10),  # 19 of 20 calls took 10 ms
        ({10: 18, 500: 2}, 95, 500),
    ],
)
def test_percentiles_are_nearest_rank(counts: dict[int, int], p: float, expected: int) -> None:
    assert service.percentile(counts, p) == expected


def _withheld(
    counts: dict[tuple[str, str], int],
    *relations: Relation,
    complements: dict[tuple[str, str], int] | None = None,
) -> set[tuple[str, str]]:
    return disclosure.withheld(
        counts, complements=complements or {}, relations=relations, threshold=5
    )


def test_small_counts_are_withheld_and_zero_is_shown() -> None:
    counts = {("a", "exchanges"): 4, ("b", "exchanges"): 0, ("c", "exchanges"): 5}
    assert _withheld(counts) == {("a", "exchanges")}


def test_a_count_whose_complement_is_small_is_withheld() -> None:
    """Decided 10 and on time 8 would give away the 2 late ones."""
    counts = {("o", "requests_decided"): 10, ("o", "requests_on_time"): 8}
    complements = {("o", "requests_on_time"): 2}
    assert _withheld(counts, complements=complements) == {("o", "requests_on_time")}


@pytest.mark.parametrize(
    ("rows", "hidden"),
    [
        # one small row: the total minus the others would give it away
        ({"a": 40, "b": 2, "c": 9}, {"b", "c"}),
        # two small rows: together they are 2, so each is 1
        ({"a": 40, "b": 9, "c": 1, "d": 1}, {"b", "c", "d"}),
        # a small row and the next smallest (5): their sum, 6, pins them to 1 and 5
        ({"a": 40, "b": 1, "c": 5}, {"a", "b", "c"}),
        # nothing small: nothing withheld
        ({"a": 40, "b": 9}, set()),
    ],
)
def test_withheld_parts_of_a_sum_are_never_worked_out(
    rows: dict[str, int], hidden: set[str]
) -> None:
    counts = {(row, "exchanges"): n for row, n in rows.items()}
    counts[("total", "exchanges")] = sum(rows.values())
    relation = Relation("exchanges", "total", tuple(rows))
    assert _withheld(counts, relation) == {(row, "exchanges") for row in hidden}


def test_what_no_row_shows_counts_as_withheld() -> None:
    """Refusals naming no registered item are in the total only: 2 of them, beside
    shown rows, would be the total minus the rows."""
    counts = {("a", "refused"): 30, ("b", "refused"): 7, ("total", "refused"): 39}
    relation = Relation("refused", "total", ("a", "b"), rest=2)
    assert _withheld(counts, relation) == {("b", "refused")}


def test_withholding_spreads_through_linked_sums() -> None:
    """An owner is the sum of its items, the total the sum of the owners: an item
    withheld in one owner makes the next smallest go too, and so on up."""
    counts = {
        ("x1", "exchanges"): 20,
        ("x2", "exchanges"): 2,
        ("y1", "exchanges"): 30,
        ("ox", "exchanges"): 22,
        ("oy", "exchanges"): 30,
        ("total", "exchanges"): 52,
    }
    hidden = _withheld(
        counts,
        Relation("exchanges", "ox", ("x1", "x2")),
        Relation("exchanges", "oy", ("y1",)),
        Relation("exchanges", "total", ("ox", "oy")),
        Relation("exchanges", "total", ("x1", "x2", "y1")),
    )
    assert ("x2", "exchanges") in hidden
    assert ("x1", "exchanges") in hidden  # else 22 - 20
    assert ("total", "exchanges") not in hidden  # 52 = 22 + 30 gives nothing away


def _inputs(exchanges: list[ExchangeRow], requests: list[RequestRow] = ()) -> service.Inputs:
    return service.Inputs(
        period=periods.parse("2026-11"),
        exchanges=exchanges,
        owner_times={},
        records={},
        items={"a": ("A", "o1"), "b": ("B", "o1"), "c": ("C", "o2")},
        departments={"o1": "Owner 1", "o2": "Owner 2", "k": "Consumer"},
        requests=list(requests),
        progress=Progress(through=10, log_size=10),
    )


def _build(inputs: service.Inputs, **minutes: float) -> Any:
    return service.build(
        inputs,
        now=datetime(2026, 11, 20, tzinfo=UTC),
        threshold=5,
        minutes_saved=minutes,
        minutes_default=10,
    )


def test_rates_are_withheld_when_a_count_they_are_made_of_is() -> None:
    """100 served and 2 failed: the error rate and the availability would give the
    two failures away."""
    report = _build(
        _inputs(
            [
                ExchangeRow("a", "k", "p", "ok", "", True, 100),
                ExchangeRow("a", "k", "p", "failed", "owner-unavailable", True, 2),
            ]
        )
    )
    item = {row.item: row for row in report.items}["a"]
    assert item.exchanges == 100
    assert item.failed is None
    assert item.error_rate is None
    assert item.owner_availability is None
    assert {"failed", "error_rate", "owner_availability"} <= set(item.suppressed)


def _served(**counts: int) -> list[ExchangeRow]:
    return [ExchangeRow(item, "k", "p", "ok", "", True, n) for item, n in counts.items()]


def test_minutes_are_shown_only_where_every_part_is() -> None:
    """Items with different minutes would let a sum of minutes solve for a withheld
    item; consumers' minutes would split them by item, so consumers have none."""
    shown = _build(_inputs(_served(a=40, b=12, c=30)), a=20.0)
    assert shown.total.minutes_saved == 40 * 20 + 12 * 10 + 30 * 10
    owners = {row.department: row for row in shown.owners}
    assert owners["o1"].minutes_saved == 40 * 20 + 12 * 10
    assert "minutes_saved" not in type(shown.consumers[0]).model_fields
    partly = _build(_inputs(_served(a=40, b=12, c=3)), a=20.0)
    items = {row.item: row for row in partly.items}
    assert items["a"].minutes_saved == 800.0
    assert items["c"].minutes_saved is None
    assert partly.total.minutes_saved is None  # 1220 - 800 - 120 = 30 = 3 x 10


def test_a_withheld_count_takes_its_department_counts_along() -> None:
    report = _build(_inputs([ExchangeRow("a", "k", "p", "ok", "", True, 4)]))
    item = {row.item: row for row in report.items}["a"]
    assert item.exchanges is None
    assert item.consumers is None  # consumers <= exchanges would bound it


def test_the_95th_percentile_needs_twenty_calls() -> None:
    inputs = _inputs([ExchangeRow("a", "k", "p", "ok", "", True, 19)])
    few = _build(service.Inputs(**{**inputs.__dict__, "owner_times": {"a": [(10, 18), (900, 1)]}}))
    item = {row.item: row for row in few.items}["a"]
    assert item.owner_p50_ms == 10
    assert item.owner_p95_ms is None  # 19 calls: nearly the slowest one
    many = _build(service.Inputs(**{**inputs.__dict__, "owner_times": {"a": [(10, 19), (900, 1)]}}))
    assert {row.item: row for row in many.items}["a"].owner_p95_ms == 10


def test_decisions_count_on_time_and_overdue() -> None:
    day = datetime(2026, 11, 2, 9, tzinfo=UTC)
    decided = [
        RequestRow("o1", "a", "approved", day, day + timedelta(days=14), day + timedelta(hours=h))
        for h in (10, 20, 30, 40, 50)
    ] + [
        RequestRow("o1", "a", "refused", day, day + timedelta(days=1), day + timedelta(days=3))
        for _ in range(5)
    ]
    pending = [
        RequestRow("o1", "a", "pending", day, day + timedelta(days=d), None)
        for d in (1, 2, 3, 4, 30, 31)
    ]
    report = service.build(
        _inputs([], decided + pending),
        now=day + timedelta(days=10),
        threshold=5,
        minutes_saved={},
        minutes_default=10,
    )
    owner = {row.department: row for row in report.owners}["o1"]
    assert owner.requests_decided == 10
    assert owner.requests_on_time == 5  # and 5 late: both safe
    assert owner.on_time_share == 0.5
    assert owner.decision_median_hours == 61.0  # (50 + 72) / 2
    assert owner.requests_pending == 6
    assert owner.requests_overdue is None  # four overdue: withheld
