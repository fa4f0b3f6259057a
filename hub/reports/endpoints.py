"""The efficiency report's routes (docs/efficiency.md): for auditors and administrators."""

import csv
import io
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from onceonly.hub.audit.dependencies import CurrentAudit, audited
from onceonly.hub.dependencies import HubDep
from onceonly.hub.kit.problems import InvalidRequest, problems
from onceonly.hub.people.dependencies import PrincipalDep
from onceonly.hub.people.principal import Forbidden
from onceonly.hub.reports import periods, service
from onceonly.hub.reports.schemas import EfficiencyReport

router = APIRouter(prefix="/v1/reports", tags=["reports"])


Period = Annotated[
    str | None,
    Query(
        max_length=16,
        description="2026-11 (a month), 2026-Q4 (a quarter) or 2026 (a year), UTC",
    ),
]


def _period(text: str | None, default: str) -> periods.Period:
    try:
        return periods.parse(text if text is not None else default)
    except periods.BadPeriod as error:
        raise InvalidRequest(str(error)) from None


async def _report(hub: HubDep, period: periods.Period) -> EfficiencyReport:
    return await service.efficiency_report(
        hub.engine,
        rollup=hub.rollup,
        period=period,
        now=hub.clock.now(),
        threshold=hub.settings.report_threshold,
        minutes_saved=hub.settings.report_minutes_saved,
        minutes_default=hub.settings.report_minutes_saved_default,
    )


@router.get(
    "/efficiency",
    response_model=EfficiencyReport,
    responses=problems(InvalidRequest, Forbidden),
    dependencies=[Depends(audited("report.efficiency"))],
)
async def efficiency(
    hub: HubDep, principal: PrincipalDep, scope: CurrentAudit, period: Period = None
) -> EfficiencyReport:
    """Reuse, speed, reliability and deadlines per item, owner and consumer department
    (default period: this month).

    Every figure counts the audit log's entries ``[0, log_entries)``; small counts are
    withheld (``threshold``). Reading it is audited."""
    principal.require_report_reader()
    chosen = _period(period, default=periods.month_of(hub.clock.now()))
    scope.note(query={"period": chosen.name, "format": "json"})
    report = await _report(hub, chosen)
    await scope.record_success()
    return report


_CSV = {"text/csv": {"schema": {"type": "string"}}}


@router.get(
    "/efficiency/export",
    response_class=Response,
    responses={
        200: {"description": "the report as open data (CSV, RFC 4180)", "content": _CSV},
        **problems(InvalidRequest, Forbidden),
    },
    dependencies=[Depends(audited("report.export"))],
)
async def efficiency_export(
    hub: HubDep, principal: PrincipalDep, scope: CurrentAudit, period: Period = None
) -> Response:
    """The open-data export: one month that has ended (default: the last one), as CSV
    with the documented columns (docs/efficiency.md). Only whole past months are
    published, so that no two published versions of a period can be subtracted."""
    principal.require_report_reader()
    now = hub.clock.now()
    chosen = _period(period, default=periods.last_month(now))
    if chosen.kind != "month" or chosen.end > now:
        raise InvalidRequest(
            f"the open-data export is made for a month that has ended, not {chosen.name}"
            " (for this month, a quarter or a year: GET /v1/reports/efficiency)"
        )
    scope.note(query={"period": chosen.name, "format": "csv"})
    report = await _report(hub, chosen)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=service.EXPORT_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(service.export_rows(report))
    body = buffer.getvalue()
    await scope.record_success()  # once the export is made, before a byte of it is sent
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="onceonly-efficiency-{report.period}.csv"'
        },
    )
