"""Tier 1: the efficiency report's pure parts (periods, tallies, percentiles, suppression)."""

import json
from datetime import UTC, datetime

import pytest

from onceonly.hub.reports import periods, service
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


def test_small_counts_and_what_rests_on_them_are_withheld() -> None:
    row = {
        "exchanges": 12,
        "refused": 3,
        "failed": 0,
        "records": 4,
        "exchanges_per_record": 3.0,
        "minutes_saved": 180.0,
        "owner_p50_ms": 9,
        "owner_p95_ms": 20,
        "error_rate": 0.0,
        "owner_availability": 1.0,
        "_queries": 15,
        "_timed": 4,
        "_reached": 15,
    }
    out = service.suppress(row, threshold=5)
    assert out["refused"] is None
    assert out["records"] is None
    assert out["exchanges_per_record"] is None  # rests on records
    assert out["owner_p50_ms"] is None
    assert out["owner_p95_ms"] is None  # four timed calls
    assert out["exchanges"] == 12
    assert out["failed"] == 0  # zero counts nobody
    assert out["suppressed"] == [
        "exchanges_per_record",
        "owner_p50_ms",
        "owner_p95_ms",
        "records",
        "refused",
    ]
    assert not any(name.startswith("_") for name in out)


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


def test_one_withheld_row_is_never_the_total_minus_the_others() -> None:
    rows = [
        ExchangeRow("a", "k", "p", "ok", "", True, 40),
        ExchangeRow("b", "k", "p", "ok", "", True, 2),  # withheld
        ExchangeRow("c", "k", "p", "ok", "", True, 9),  # the next smallest: withheld too
    ]
    report = service.build(
        _inputs(rows),
        now=datetime(2026, 11, 20, tzinfo=UTC),
        threshold=5,
        minutes_saved={},
        minutes_default=10,
    )
    by_item = {row.item: row for row in report.items}
    assert report.total.exchanges == 51
    assert by_item["a"].exchanges == 40
    assert by_item["b"].exchanges is None
    assert by_item["c"].exchanges is None
    assert "exchanges" in by_item["c"].suppressed
    assert by_item["c"].minutes_saved is None


def test_decisions_count_on_time_and_overdue() -> None:
    day = datetime(2026, 11, 2, 9, tzinfo=UTC)
    from datetime import timedelta

    decided = [
        RequestRow("o1", "a", "approved", day, day + timedelta(days=14), day + timedelta(hours=h))
        for h in (10, 20, 30, 40)
    ] + [RequestRow("o1", "a", "refused", day, day + timedelta(days=1), day + timedelta(days=3))]
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
    assert owner.requests_decided == 5
    assert owner.requests_on_time is None  # four: withheld
    assert owner.on_time_share == 0.8  # rests on the five decided
    assert owner.decision_median_hours == 30.0
    assert owner.requests_pending == 6
    assert owner.requests_overdue is None  # four overdue: withheld
