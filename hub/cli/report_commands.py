"""``onceonly report efficiency``: the once-only efficiency report (docs/efficiency.md);
``onceonly report rebuild``: its roll-ups added again from the audit log (operators).

For auditors and administrators. ``-o table`` (on a terminal) prints the total and a
table per items, owners and consumer departments, a withheld figure as ``withheld``;
``-o json`` the hub's report as it is; ``-o csv`` the open-data export with its
documented columns, for a month that has ended (GET /v1/reports/efficiency/export;
default: last month).
"""

import argparse
import sys
from typing import Any

from onceonly.hub.cli.common import add_command, add_hub_command, hub_of, talking_to
from onceonly.hub.cli.output import Shape, form_of, show

ITEMS = Shape(
    columns=(
        "item",
        "owner",
        "exchanges",
        "refused",
        "failed",
        "records",
        "exchanges_per_record",
        "minutes_saved",
        "owner_p50_ms",
        "owner_p95_ms",
        "owner_availability",
    ),
    what="items",
)
OWNERS = Shape(
    columns=(
        "department",
        "exchanges",
        "records",
        "owner_p95_ms",
        "requests_decided",
        "on_time_share",
        "decision_median_hours",
        "requests_pending",
        "requests_overdue",
    ),
    what="owner departments",
)
CONSUMERS = Shape(
    columns=("department", "exchanges", "refused", "failed", "items"),
    what="consumer departments",
)
TOTAL = Shape(
    columns=(
        "exchanges",
        "refused",
        "failed",
        "records",
        "exchanges_per_record",
        "minutes_saved",
        "consumers",
        "owner_p50_ms",
        "owner_p95_ms",
        "error_rate",
        "owner_availability",
        "requests_decided",
        "on_time_share",
        "decision_median_hours",
        "requests_pending",
        "requests_overdue",
    )
)


def _marked(row: dict[str, Any]) -> dict[str, Any]:
    """A withheld figure as ``withheld``, so a reader tells it from an empty one (a
    withheld count is not always small: one may be withheld beside a small one)."""
    return {**row, **dict.fromkeys(row.get("suppressed", []), "withheld")}


def _efficiency(args: argparse.Namespace) -> int:
    from onceonly.hub.cli.session import credential

    form = form_of(args)
    if form == "csv":
        return _export(args)
    hub = hub_of(args)
    with talking_to(hub.url), hub.client(credential(hub.url)) as admin:
        report = admin.call("GET", "/v1/reports/efficiency", period=args.period)
    if form == "json":
        show(report, form="json")
    else:
        _show_report(report)
    return 0


def _show_report(report: dict[str, Any]) -> None:
    threshold = int(report["threshold"])
    out = sys.stdout
    out.write(
        f"Once-only efficiency, {report['period']} (UTC): audit log entries 0 to"
        f" {report['log_entries'] - 1} of {report['log_size']}; small counts are withheld"
        f" (below {threshold}), and what would give them away\n\nTotal\n"
    )
    show(_marked(report["total"]), form="table", shape=TOTAL)
    for title, rows, shape in (
        ("Items", report["items"], ITEMS),
        ("Owner departments", report["owners"], OWNERS),
        ("Consumer departments", report["consumers"], CONSUMERS),
    ):
        out.write(f"\n{title}\n")
        show([_marked(row) for row in rows], form="table", shape=shape)


def _export(args: argparse.Namespace) -> int:
    from onceonly.hub.cli.session import credential

    hub = hub_of(args)
    with (
        hub.client(credential(hub.url)) as admin,
        talking_to(hub.url),
        admin.download("/v1/reports/efficiency/export", period=args.period) as chunks,
    ):
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
    return 0


def _rebuild(_: argparse.Namespace) -> int:
    """Empty the roll-ups in the hub's database (its settings) and add the whole log
    again, while the hub runs or not (decision 0080)."""
    import asyncio

    from sqlalchemy.exc import SQLAlchemyError

    from onceonly.hub.cli.startup import database_name, load_settings, missing_database
    from onceonly.hub.db import make_engine
    from onceonly.hub.kit.clock import SYSTEM_CLOCK
    from onceonly.hub.reports import check
    from onceonly.hub.reports.rollup import Rollup

    url = load_settings().resolved_database_url
    missing = missing_database(url)  # a new, empty database has nothing to rebuild from
    if missing:
        where = database_name(url)
        print(f"cannot rebuild: the roll-ups in {where}: {missing}", file=sys.stderr)
        return 2

    async def rebuild() -> int:
        engine = make_engine(url)
        try:
            await check.rebuild(engine)
            rollup = Rollup(engine, interval=0, clock=SYSTEM_CLOCK)
            while (progress := await rollup.catch_up()).behind:  # a replica's race: go on
                pass
            return progress.through
        finally:
            await engine.dispose()

    try:
        through = asyncio.run(rebuild())
    except SQLAlchemyError as error:
        reason = str(error).splitlines()[0]
        print(f"cannot rebuild: the roll-ups in {database_name(url)}: {reason}", file=sys.stderr)
        return 2
    print(f"OK: the report's roll-ups added again from the log's {through} entries")
    return 0


def register(sub: Any) -> None:
    """Add ``onceonly report …`` to the top-level subcommands ``sub``."""
    report = sub.add_parser("report", help="reports of the hub's use").add_subparsers(
        dest="report_command", required=True
    )
    efficiency = add_hub_command(
        report,
        "efficiency",
        _efficiency,
        "reuse, speed, reliability and deadlines per item and department (auditors and"
        " administrators); -o csv is the open-data export of a month that has ended",
    )
    efficiency.add_argument(
        "--period",
        help="2026-11 (a month), 2026-Q4 (a quarter) or 2026 (a year), UTC; default: this"
        " month (-o csv: last month)",
    )
    add_command(
        report,
        "rebuild",
        _rebuild,
        "for operators, with the hub's settings: empty the report's roll-ups and add every"
        " entry of the audit log again (after 'onceonly audit check-nodes' found them wrong;"
        " the hub may keep running)",
    )
