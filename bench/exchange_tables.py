"""Markdown tables of ``bench/exchange.py`` results, as docs/performance.md shows them.

Run: ``python bench/exchange_tables.py bench/results/exchange-<stamp>.json ...``
(one file per run; a file with several ``--hub-workers`` values gives one row per
value in the workers table).
"""

import json
import sys
from pathlib import Path
from typing import Any

CPU = ("hub", "adapter", "nginx", "postgres", "wrk")
DATABASE = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def _cell(value: Any) -> str:
    return "—" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def paths_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| database | path | req/s | p50 ms | p90 ms | p99 ms | errors | CPU ms/req "
        + " | ".join(CPU)
        + " |",
        "|---|---|" + "---:|" * (5 + len(CPU)),
    ]
    for result in results:
        database = DATABASE[result["meta"]["options"]["database"]]
        run = result["runs"][0]
        for path, row in run["summary"].items():
            latency, cpu = row["latency_ms"], row["cpu_ms_per_request"]
            cells = [database, path, row["throughput"], latency.get("p50"), latency.get("p90")]
            cells += [latency.get("p99"), row["errors"]]
            cells += [cpu.get(name) if cpu.get(name) else None for name in CPU]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def ratio_lines(results: list[dict[str, Any]]) -> list[str]:
    lines = []
    for result in results:
        database = DATABASE[result["meta"]["options"]["database"]]
        ratios = ", ".join(f"{k} {v:.2f}x" for k, v in result["runs"][0]["ratios"].items())
        lines.append(f"- {database}: {ratios}")
    return lines


def half_rate_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| database | rate req/s | direct p50 / p90 / p99 ms | hub p50 / p90 / p99 ms"
        " | added p50 / p90 / p99 ms |",
        "|---|---:|---|---|---|",
    ]
    for result in results:
        half = result["runs"][0].get("half_rate")
        if half is None:
            continue
        database = DATABASE[result["meta"]["options"]["database"]]

        def three(values: dict[str, float]) -> str:
            return " / ".join(_cell(values.get(key)) for key in ("p50", "p90", "p99"))

        lines.append(
            f"| {database} | {half['rate']:g} | {three(half['direct_ms'])} | "
            f"{three(half['hub_ms'])} | {three(half['added_ms'])} |"
        )
    return lines


def workers_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| database | hub workers | hub req/s | p99 ms | errors | audit problems"
        " | CPU ms/req hub | adapter | postgres | hub idle CPU ms/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        database = DATABASE[result["meta"]["options"]["database"]]
        for run in result["runs"]:
            row = run["summary"].get("hub")
            if row is None:
                continue
            cpu = row["cpu_ms_per_request"]
            cells = [database, run["hub_workers"], row["throughput"]]
            cells += [row["latency_ms"].get("p99"), row["errors"], len(run["audit_problems"])]
            cells += [cpu.get("hub"), cpu.get("adapter"), cpu.get("postgres")]
            cells.append(run["idle_cpu_ms_per_second"].get("hub"))
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def main(paths: list[str]) -> None:
    results = [json.loads(Path(path).read_text()) for path in paths]
    for result, path in zip(results, paths, strict=True):
        meta = result["meta"]
        loads = [r["load_average"] for run in result["runs"] for r in run["rounds"]]
        loads = [load for load in loads if load is not None]
        span = f"{min(loads):g} to {max(loads):g}" if loads else "?"
        print(
            f"- `{path}`: commit {meta['commit']}, load average {meta.get('load_average_before')}"
            f" before, {meta.get('load_average_after')} after, {span} at the rounds' ends"
        )
    single = [r for r in results if len(r["runs"]) == 1 or "nginx" in r["runs"][0]["summary"]]
    for title, lines in (
        ("paths", paths_table(single)),
        ("ratios", ratio_lines(single)),
        ("half rate", half_rate_table(single)),
        ("workers", workers_table(results)),
    ):
        print(f"\n{title}:\n")
        print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
