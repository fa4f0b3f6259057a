"""The efficiency dashboard's figures as the page shows them, decided without I/O.

The report (``reports.service.efficiency_report``, the API's) has already withheld
what could single out a person: a withheld figure is ``None`` and named in its row's
``suppressed``. This module only formats: a withheld figure is shown as "withheld"
(never its value, never a bar), one with nothing to work it out from as "-".
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from onceonly.hub.console.charts import Bar
from onceonly.hub.console.views import N_, FieldError
from onceonly.hub.reports import periods
from onceonly.hub.reports.schemas import EfficiencyReport

WITHHELD: Final = N_("withheld")
NOTHING: Final = "\N{EN DASH}"
PERCENT: Final = frozenset({"error_rate", "owner_availability", "on_time_share"})
DECIMAL: Final = frozenset({"exchanges_per_record", "decision_median_hours"})
HOURS: Final = frozenset({"minutes_saved"})  # shown in hours


@dataclass(frozen=True)
class Figure:
    """One figure: ``value`` for a chart (None: no bar), ``text`` for the page, and
    whether it is withheld (the text is then the N_ message "withheld")."""

    value: float | None
    text: str
    withheld: bool = False


def figure(row: Any, name: str) -> Figure:
    value = getattr(row, name, None)
    if value is None:
        withheld = name in getattr(row, "suppressed", ())
        return Figure(None, WITHHELD if withheld else NOTHING, withheld)
    if name in PERCENT:
        return Figure(value, f"{value * 100:.1f} %")
    if name in HOURS:
        return Figure(value, f"{value / 60:,.1f} h")
    if name in DECIMAL:
        return Figure(value, f"{value:,.2f}")
    return Figure(value, f"{value:,}")


def bars(rows: list[Any], name: str, *, label: str, withheld: str) -> list[Bar]:
    """A chart's bars for figure ``name`` of ``rows``, named by their ``label``
    attribute; ``withheld`` is the word "withheld" in the page's language."""
    made = []
    for row in rows:
        shown = figure(row, name)
        made.append(
            Bar(getattr(row, label), shown.value, withheld if shown.withheld else shown.text)
        )
    return made


@dataclass(frozen=True)
class DashboardView:
    report: EfficiencyReport
    total_names: tuple[str, ...]
    item_names: tuple[str, ...]
    owner_names: tuple[str, ...]
    consumer_names: tuple[str, ...]


FIGURE_LABELS: Final = {
    "exchanges": N_("Exchanges served"),
    "refused": N_("Refused"),
    "failed": N_("Failed"),
    "records": N_("Distinct records"),
    "exchanges_per_record": N_("Exchanges per record"),
    "minutes_saved": N_("Citizen time saved"),
    "consumers": N_("Consumer departments"),
    "items": N_("Data items"),
    "owner_p50_ms": N_("Owner response, median (ms)"),
    "owner_p95_ms": N_("Owner response, 95th percentile (ms)"),
    "error_rate": N_("Error rate"),
    "owner_availability": N_("Owner availability"),
    "requests_decided": N_("Access requests decided"),
    "requests_on_time": N_("Decided by the deadline"),
    "on_time_share": N_("Share on time"),
    "decision_median_hours": N_("Median time to decide (hours)"),
    "requests_pending": N_("Pending now"),
    "requests_overdue": N_("Overdue now"),
}
_FIGURES = ("exchanges", "records", "exchanges_per_record", "minutes_saved", "consumers")
_SERVICE = ("owner_p50_ms", "owner_p95_ms", "error_rate", "owner_availability")
_DECISIONS = (
    "requests_decided",
    "requests_on_time",
    "on_time_share",
    "decision_median_hours",
    "requests_pending",
    "requests_overdue",
)


def view(report: EfficiencyReport) -> DashboardView:
    return DashboardView(
        report=report,
        total_names=(*_FIGURES, "refused", "failed", *_SERVICE, *_DECISIONS),
        item_names=(*_FIGURES, *_SERVICE),
        owner_names=("exchanges", "consumers", *_SERVICE, *_DECISIONS),
        consumer_names=("exchanges", "refused", "failed", "items"),
    )


@dataclass(frozen=True)
class PeriodChoice:
    label: str  # an N_ message
    period: str


def period_choices(now: datetime) -> list[PeriodChoice]:
    """This and the last month, this quarter and this year (UTC), as links."""
    month = periods.month_of(now)
    year = month[:4]
    quarter = f"{year}-Q{(int(month[5:7]) - 1) // 3 + 1}"
    return [
        PeriodChoice(N_("This month"), month),
        PeriodChoice(N_("Last month"), periods.last_month(now)),
        PeriodChoice(N_("This quarter"), quarter),
        PeriodChoice(N_("This year"), year),
    ]


def period_errors() -> list[FieldError]:
    return [
        FieldError("period", N_("Enter a month like 2026-11, a quarter like 2026-Q4 or a year"))
    ]
