"""The efficiency report at 1,000,000 audit entries: roll-up catch-up and report time.

``python bench/report_efficiency.py [--entries 1000000] [--databases sqlite,postgresql]
[--repeat 5] [--increment 10000]``; see bench/README.md.

Method: a migrated database (SQLite in a temporary directory; PostgreSQL: a fresh
database on ``--postgres-url``'s server, dropped after) gets the starter catalogue's
departments and items as rows (schemas/; the report reads only their ids, titles and
owners) and two more consumer departments, then ``--entries`` record-query entries
over three months (2026-10-01 to 2026-12-28): real leaves (``build_entry`` and
``leaf_bytes``, so the roll-up decodes real JSON), 17 items with skewed popularity,
10 consumer departments, a few purposes, 90 % ok / 7 % refused / 3 % failed with the
hub's reason slugs, the owner's time from a per-item log-normal, and subjects drawn
(skewed: some people are asked about often) from 200,000 pseudonyms. The rows go in
with executemany (SQLite) or COPY (PostgreSQL), 20,000 a transaction. Tree nodes
(``audit_nodes``) are not written: the report reads leaves only, and this bench
measures the report, not the log's appends (bench/audit_append.py does).

Then, in one process, as a hub would:

1. ``Rollup.catch_up()`` from an empty cursor over the whole log: entries/s, wall
   time, CPU time of this process (SQLite's work included: it runs in-process) and,
   on PostgreSQL, of the server (``_processes.postgres_cpu_seconds``);
2. with the roll-ups caught up, ``service.efficiency_report`` for a month (2026-11),
   a quarter (2026-Q4) and a year (2026), ``--repeat`` times each: median and max;
3. ``--increment`` more entries appended (2026-12-28 to 12-31): the catch-up of
   those (what the worker, or the first reader after a burst, does), then the
   quarter's report.
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from onceonly.hub.audit import leaves
from onceonly.hub.audit.models import AuditEntry
from onceonly.hub.config import Settings
from onceonly.hub.db import make_engine, make_sync_engine
from onceonly.hub.kit.clock import SystemClock
from onceonly.hub.migrate import upgrade
from onceonly.hub.registry.models import Department, Item
from onceonly.hub.reports import periods, service
from onceonly.hub.reports.models import ReportExchanges, ReportOwnerTimes, ReportRecords
from onceonly.hub.reports.rollup import Rollup
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Session

from _processes import fresh_postgres_database, postgres_cpu_seconds

RESULTS = Path(__file__).parent / "results"
CATALOGUE = Path(__file__).resolve().parent.parent / "schemas"
EXTRA_CONSUMERS = {
    "unemployment-insurance": "Unemployment Insurance Fund",
    "health-insurance": "Health Insurance Fund",
}
PURPOSES = ("benefit-eligibility", "housing-benefit", "tax-assessment", "statistics")
REFUSED = ("no-grant", "grant-not-active", "unknown-purpose", "record-not-found")
FAILED = ("owner-timeout", "owner-unavailable", "owner-invalid-response")
SUBJECTS = 200_000
START = datetime(2026, 10, 1, tzinfo=UTC)
LOG_END = datetime(2026, 12, 28, tzinfo=UTC)  # the increment goes after, to the 31st
INCREMENT_END = datetime(2026, 12, 31, 23, tzinfo=UTC)
REPORTS = ("2026-11", "2026-Q4", "2026")
CHUNK = 20_000
COLUMNS = ("idx", "leaf", "leaf_hash", "time", "action", "outcome", "department", "client")
COLUMNS += ("item", "subject")


@dataclass(frozen=True)
class Options:
    databases: list[str]
    postgres_url: str
    entries: int
    repeat: int
    increment: int


@dataclass(frozen=True)
class Catalogue:
    """What entries are drawn from: items (id, owner, median owner ms), consumers."""

    items: list[tuple[str, str, float]]
    item_weights: list[float]
    consumers: list[str]
    consumer_weights: list[float]
    subjects: list[str]


def catalogue(rng: random.Random) -> Catalogue:
    documents = [json.loads(p.read_text()) for p in sorted((CATALOGUE / "items").glob("*.json"))]
    rng.shuffle(documents)  # popularity is not alphabetical
    departments = json.loads((CATALOGUE / "departments.json").read_text())["departments"]
    consumers = [d["id"] for d in departments] + list(EXTRA_CONSUMERS)
    return Catalogue(
        items=[(d["id"], d["owner"], rng.uniform(15, 400)) for d in documents],
        item_weights=[1 / (rank + 1) for rank in range(len(documents))],  # Zipf-like
        consumers=consumers,
        consumer_weights=[1 / (rank + 1) ** 0.7 for rank in range(len(consumers))],
        subjects=[f"{rng.getrandbits(256):064x}" for _ in range(SUBJECTS)],
    )


def register_catalogue(url: str) -> None:
    """The starter catalogue's departments and items, and the extra consumers, as rows."""
    departments = json.loads((CATALOGUE / "departments.json").read_text())["departments"]
    engine = make_sync_engine(url)
    with Session(engine) as session:
        for department in departments:
            session.add(Department(id=department["id"], name=department["name"]))
        for department_id, name in EXTRA_CONSUMERS.items():
            session.add(Department(id=department_id, name=name))
        session.flush()
        for path in sorted((CATALOGUE / "items").glob("*.json")):
            document = json.loads(path.read_text())
            session.add(
                Item(
                    id=document["id"],
                    title=document["title"],
                    owner_id=document["owner"],
                    sharing_class=document["sharing_class"],
                    classification=document["classification"],
                )
            )
        session.commit()
    engine.dispose()


def _outcome(rng: random.Random, median_ms: float) -> dict[str, Any]:
    """Outcome, reason, and whether and how long the owner was asked."""
    draw = rng.random()
    owner_ms = min(round(rng.lognormvariate(math.log(median_ms), 0.6)), 4999)
    if draw < 0.90:
        return {"outcome": "ok", "owner_ms": owner_ms, "reached": True}
    if draw < 0.97:
        reason = rng.choices(REFUSED, weights=(6, 2, 1, 3))[0]
        reached = reason == "record-not-found"
        return {"outcome": "refused", "reason": reason, "owner_ms": owner_ms, "reached": reached}
    reason = rng.choices(FAILED, weights=(3, 2, 1))[0]
    owner_ms = 5000 if reason == "owner-timeout" else owner_ms
    return {"outcome": "failed", "reason": reason, "owner_ms": owner_ms, "reached": True}


def _entry(rng: random.Random, world: Catalogue, *, moment: datetime, n: int) -> dict[str, Any]:
    item, owner, median_ms = rng.choices(world.items, weights=world.item_weights)[0]
    consumer = rng.choices(world.consumers, weights=world.consumer_weights)[0]
    result = _outcome(rng, median_ms)
    reached = result["reached"]
    ok = result["outcome"] == "ok"
    return leaves.build_entry(
        time=moment,
        action="record.query",
        outcome=result["outcome"],
        reason=result.get("reason"),
        request_id=f"{n:032x}",
        client=f"{consumer}-adapter",
        department=consumer,
        owner=owner if reached else None,
        item=item,
        version=1,
        subject=world.subjects[int(SUBJECTS * rng.random() ** 2)],
        purpose=rng.choice(PURPOSES),
        grant=f"g{rng.randrange(300):031d}",
        commitment=leaves.COMMITMENT_PREFIX + f"{rng.getrandbits(256):064x}"[:43] if ok else None,
        owner_ms=result["owner_ms"] if reached else None,
    )


def _row(index: int, entry: dict[str, Any]) -> tuple[Any, ...]:
    """The row as the hub's append writes it (onceonly.hub.audit.service), in COLUMNS order."""
    leaf = leaves.leaf_bytes(entry)
    return (
        index,
        leaf,
        leaves.leaf_hash(leaf),
        datetime.fromisoformat(entry["time"]),
        entry["action"],
        entry["outcome"],
        entry.get("department"),
        entry.get("client"),
        entry.get("item"),
        entry.get("subject"),
    )


def rows(
    world: Catalogue, *, first: int, count: int, start: datetime, end: datetime, seed: int
) -> Iterator[list[tuple[Any, ...]]]:
    """``count`` entries from index ``first``, evenly over ``[start, end)``, in chunks."""
    rng = random.Random(seed)
    step = (end - start) / count
    for chunk in range(0, count, CHUNK):
        yield [
            _row(first + n, _entry(rng, world, moment=start + step * n, n=first + n))
            for n in range(chunk, min(chunk + CHUNK, count))
        ]


def _insert_sqlite(url: str, chunks: Iterator[list[tuple[Any, ...]]]) -> None:
    engine = make_sync_engine(url)
    table = AuditEntry.__table__  # type: ignore[attr-defined]
    for chunk in chunks:
        with engine.begin() as conn:  # the engine issues BEGIN itself (onceonly.hub.db)
            conn.execute(sa.insert(table), [dict(zip(COLUMNS, row, strict=True)) for row in chunk])
    engine.dispose()


def _insert_postgres(url: str, chunks: Iterator[list[tuple[Any, ...]]]) -> None:
    statement = f"COPY audit_entries ({', '.join(COLUMNS)}) FROM STDIN"
    with psycopg.connect(url) as conn:
        for chunk in chunks:
            with conn.cursor() as cursor, cursor.copy(statement) as copy:
                for row in chunk:
                    copy.write_row(row)
            conn.commit()


def fill(url: str, chunks: Iterator[list[tuple[Any, ...]]]) -> float:
    """Insert the entries, then ANALYZE; seconds."""
    began = time.perf_counter()
    postgres = url.startswith("postgresql")
    (_insert_postgres if postgres else _insert_sqlite)(url, chunks)
    analyze(url)
    return time.perf_counter() - began


def analyze(url: str) -> None:
    engine = make_sync_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE"))
    engine.dispose()


# --- what is measured ---------------------------------------------------------------


@dataclass
class Meter:
    """Wall time, this process's CPU time and (PostgreSQL) the server's, over a block."""

    server_cpu: Callable[[], float] | None
    wall: float = 0.0
    cpu: float = 0.0
    server: float | None = None

    @contextlib.contextmanager
    def measuring(self) -> Iterator["Meter"]:
        wall, cpu = time.perf_counter(), time.process_time()
        server = self.server_cpu() if self.server_cpu else None
        yield self
        self.wall = time.perf_counter() - wall
        self.cpu = time.process_time() - cpu
        if self.server_cpu and server is not None:
            self.server = self.server_cpu() - server


async def _report(engine: AsyncEngine, rollup: Rollup, period: str) -> float:
    """One report of ``period``, as the endpoint asks for it; milliseconds."""
    began = time.perf_counter()
    await service.efficiency_report(
        engine,
        rollup=rollup,
        period=periods.parse(period),
        now=datetime.now(UTC),
        threshold=Settings.model_fields["report_threshold"].default,
        minutes_saved={},
        minutes_default=Settings.model_fields["report_minutes_saved_default"].default,
    )
    return (time.perf_counter() - began) * 1000


async def _rollup_rows(engine: AsyncEngine) -> dict[str, int]:
    tables = (ReportExchanges, ReportOwnerTimes, ReportRecords)
    async with engine.connect() as conn:
        return {
            model.__tablename__: int(  # type: ignore[misc]
                (await conn.execute(sa.select(sa.func.count()).select_from(model))).scalar_one()
            )
            for model in tables
        }


async def _catch_up(rollup: Rollup, meter: Meter) -> dict[str, Any]:
    with meter.measuring():
        progress = await rollup.catch_up()
    return {
        "entries": progress.through,
        "wall_s": round(meter.wall, 1),
        "cpu_s": round(meter.cpu, 1),
        "server_cpu_s": None if meter.server is None else round(meter.server, 1),
        "entries_per_s": round(progress.through / meter.wall),
    }


async def _reports(engine: AsyncEngine, rollup: Rollup, repeat: int) -> dict[str, Any]:
    found = {}
    for period in REPORTS:
        runs = [await _report(engine, rollup, period) for _ in range(repeat)]
        found[period] = {
            "median_ms": round(statistics.median(runs), 1),
            "max_ms": round(max(runs), 1),
            "runs_ms": [round(run, 1) for run in runs],
        }
    return found


async def _after_increment(engine: AsyncEngine, rollup: Rollup, meter: Meter) -> dict[str, Any]:
    with meter.measuring():
        progress = await rollup.catch_up()
    report_ms = await _report(engine, rollup, "2026-Q4")
    return {
        "catch_up_ms": round(meter.wall * 1000, 1),
        "cpu_ms": round(meter.cpu * 1000, 1),
        "server_cpu_ms": None if meter.server is None else round(meter.server * 1000, 1),
        "caught_up": progress.behind == 0,
        "quarter_report_ms": round(report_ms, 1),
    }


async def measure(
    url: str, options: Options, world: Catalogue, server_cpu: Callable[[], float] | None
) -> dict[str, Any]:
    engine = make_engine(url)
    rollup = Rollup(engine, interval=30.0, clock=SystemClock())
    try:
        found: dict[str, Any] = {"catch_up": await _catch_up(rollup, Meter(server_cpu))}
        found["rollup_rows"] = await _rollup_rows(engine)
        analyze(url)  # as autovacuum/ANALYZE would have by then; reports read these tables
        found["reports"] = await _reports(engine, rollup, options.repeat)
        if options.increment:
            chunks = rows(
                world,
                first=options.entries,
                count=options.increment,
                start=LOG_END,
                end=INCREMENT_END,
                seed=2,
            )
            await asyncio.to_thread(fill, url, chunks)
            found["increment"] = await _after_increment(engine, rollup, Meter(server_cpu))
        return found
    finally:
        await engine.dispose()


@contextlib.contextmanager
def _database(name: str, options: Options, tmp: Path) -> Iterator[str]:
    if name == "sqlite":
        yield f"sqlite:///{tmp / 'hub.db'}"
    else:
        with fresh_postgres_database(options.postgres_url) as url:
            yield url


@contextlib.contextmanager
def _server_cpu(name: str, url: str) -> Iterator[Callable[[], float] | None]:
    if name == "sqlite":
        yield None
    else:
        with postgres_cpu_seconds(url) as sampler:
            yield sampler


def run(name: str, options: Options) -> dict[str, Any]:
    world = catalogue(random.Random(1414))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, _database(name, options, Path(tmp)) as url:
        upgrade(url)
        register_catalogue(url)
        chunks = rows(world, first=0, count=options.entries, start=START, end=LOG_END, seed=1)
        seconds = fill(url, chunks)
        print(f"{name}: filled {options.entries:,} entries in {seconds:.1f} s", flush=True)
        with _server_cpu(name, url) as server_cpu:
            found = asyncio.run(measure(url, options, world, server_cpu))
    return {
        "database": name,
        "entries": options.entries,
        "fill_s": round(seconds, 1),
        **found,
        "load_average": {"before": load_before, "after": os.getloadavg()},
    }


def print_report(result: dict[str, Any]) -> None:
    catch_up = result["catch_up"]
    server = catch_up["server_cpu_s"]
    print(
        f"\n{result['database']}: {result['entries']:,} entries; catch-up from an empty cursor"
        f" {catch_up['wall_s']} s ({catch_up['entries_per_s']:,} entries/s), CPU"
        f" {catch_up['cpu_s']} s in the bench" + (f" + {server} s in PostgreSQL" if server else "")
    )
    print("  roll-up rows: " + ", ".join(f"{k} {v:,}" for k, v in result["rollup_rows"].items()))
    print(f"  {'report':10} {'median ms':>10} {'max ms':>8}")
    for period, timing in result["reports"].items():
        print(f"  {period:10} {timing['median_ms']:>10} {timing['max_ms']:>8}")
    if "increment" in result:
        increment = result["increment"]
        print(
            f"  + {result['increment_entries']:,} entries: catch-up {increment['catch_up_ms']} ms"
            + ("" if increment["caught_up"] else " (not caught up)")
            + f" (CPU {increment['cpu_ms']} ms bench, {increment['server_cpu_ms']} ms server),"
            f" then the quarter's report {increment['quarter_report_ms']} ms"
        )
    before, after = result["load_average"]["before"], result["load_average"]["after"]
    print(f"  load average before {before[0]:.2f}, after {after[0]:.2f} (1 min)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--increment", type=int, default=10_000)
    args = parser.parse_args()
    databases = [name.strip() for name in args.databases.split(",") if name.strip()]
    unknown = set(databases) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown databases {sorted(unknown)}: use sqlite and/or postgresql")
    options = Options(databases, args.postgres_url, args.entries, args.repeat, args.increment)
    results = []
    for name in databases:
        result = {**run(name, options), "increment_entries": options.increment}
        print_report(result)
        results.append(result)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"report-efficiency-{stamp}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
