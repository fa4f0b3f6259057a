"""The efficiency report's body (docs/efficiency.md): figures per item, owner and consumer.

A figure is ``null`` when it is suppressed (it would count fewer than the threshold,
or it is worked out from such a count) and the row's ``suppressed`` lists it; it is
also ``null`` when there is nothing to work it out from (a rate of no queries).
"""

from datetime import datetime

from pydantic import BaseModel, Field


class Figures(BaseModel):
    exchanges: int | None = Field(description="Record queries answered with a record")
    refused: int | None = Field(description="Record queries refused (no grant, no record...)")
    failed: int | None = Field(description="Record queries that failed (the owner, the hub)")
    records: int | None = Field(description="Distinct records (item and person) served")
    exchanges_per_record: float | None = Field(
        description="Exchanges per distinct record: how often a fact collected once was used"
    )
    minutes_saved: float | None = Field(
        description="Estimated citizen minutes saved: exchanges x the item's minutes"
    )
    owner_p50_ms: int | None = Field(description="Owner response time, median (ms)")
    owner_p95_ms: int | None = Field(description="Owner response time, 95th percentile (ms)")
    error_rate: float | None = Field(description="failed / all record queries")
    owner_availability: float | None = Field(
        description="Share of the calls that reached the owner's adapter it answered"
        " (not owner-unavailable or owner-timeout)"
    )
    suppressed: list[str] = Field(description="The figures of this row that are suppressed")


class Decisions(BaseModel):
    requests_decided: int | None = Field(description="Access requests decided in the period")
    requests_on_time: int | None = Field(description="...of them decided by their deadline")
    on_time_share: float | None = Field(description="requests_on_time / requests_decided")
    decision_median_hours: float | None = Field(description="Median time to decide (hours)")
    requests_pending: int | None = Field(description="Access requests pending now")
    requests_overdue: int | None = Field(description="...of them past their deadline now")


class ItemFigures(Figures):
    item: str
    title: str
    owner: str
    consumers: int | None = Field(
        description="Distinct consumer departments served (withheld with exchanges)"
    )


class OwnerFigures(Figures, Decisions):
    department: str
    name: str
    consumers: int | None


class ConsumerFigures(BaseModel):
    department: str
    name: str
    exchanges: int | None
    refused: int | None
    failed: int | None
    items: int | None = Field(description="Distinct items it was served")
    suppressed: list[str]


class TotalFigures(Figures, Decisions):
    consumers: int | None


class EfficiencyReport(BaseModel):
    period: str = Field(description="2026-11 (a month), 2026-Q4 (a quarter) or 2026 (a year)")
    start: datetime = Field(description="The period's first instant (UTC)")
    end: datetime = Field(description="The instant after the period (UTC)")
    generated_at: datetime
    log_entries: int = Field(
        description="The audit log's entries [0, log_entries) are counted; recompute any"
        " figure from them (docs/efficiency.md)"
    )
    log_size: int = Field(description="The log's size when the report was made")
    threshold: int = Field(description="Counts from 1 to threshold - 1 are suppressed")
    total: TotalFigures
    items: list[ItemFigures]
    owners: list[OwnerFigures]
    consumers: list[ConsumerFigures]
