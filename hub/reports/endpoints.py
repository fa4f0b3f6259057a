"""The efficiency report's routes (docs/efficiency.md): for auditors and administrators."""

import csv
import io

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from onceonly.hub.audit.dependencies import CurrentAudit, audited
from onceonly.hub.dependencies import HubDep
from onceonly.hub.kit.problems import InvalidRequest, problems
from onceonly.hub.people.dependencies import PrincipalDep
from onceonly.hub.people.principal import Forbidden
from onceonly.hub.reports import periods, service
from onceonly.hub.reports.schemas import EfficiencyReport

router = APIRouter(prefix="/v1/reports", tags=["reports"])


async def _report(
    hub: HubDep, principal: PrincipalDep, scope: CurrentAudit, period: str | None, format: str
) -> EfficiencyReport:
    principal.require_report_reader()
    scope.note(query={"period": period, "format": format} if period else {"format": format})
    try:
        chosen = periods.parse(period) if period is not None else None
    except periods.BadPeriod as error:
        raise InvalidRequest(str(error)) from None
    now = hub.clock.now()
    if chosen is None:
        chosen = periods.parse(periods.month_of(now))
    report = await service.efficiency_report(
        hub.engine,
        rollup=hub.rollup,
        period=chosen,
        now=now,
        threshold=hub.settings.report_threshold,
        minutes_saved=hub.settings.report_minutes_saved,
        minutes_default=hub.settings.report_minutes_saved_default,
    )
    await scope.record_success()
    return report


@router.get(
    "/efficiency",
    response_model=EfficiencyReport,
    responses=problems(InvalidRequest, Forbidden),
    dependencies=[Depends(audited("report.efficiency"))],
)
async def efficiency(
    hub: HubDep, principal: PrincipalDep, scope: CurrentAudit, period: str | None = None
) -> EfficiencyReport:
    """Reuse, speed, reliability and deadlines per item, owner and consumer department.

    Every figure counts the audit log's entries ``[0, log_entries)``; small counts are
    suppressed (``threshold``). Reading it is audited."""
    return await _report(hub, principal, scope, period, "json")


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
    hub: HubDep, principal: PrincipalDep, scope: CurrentAudit, period: str | None = None
) -> Response:
    """The report as CSV with the documented columns (docs/efficiency.md), for publishing."""
    report = await _report(hub, principal, scope, period, "csv")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=service.EXPORT_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(service.export_rows(report))
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="onceonly-efficiency-{report.period}.csv"'
        },
    )
