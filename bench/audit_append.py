"""Sustained audit append throughput through ``AuditLog.append`` (group commit, tree nodes).

``python bench/audit_append.py [--database sqlite|postgres] [--appenders 512]
[--duration 10] [--batch-size 1024] [--writers 1]``; see bench/README.md.

Closed loop: ``--appenders`` tasks each append one entry, wait for its receipt,
and append the next, through ``--writers`` AuditLog instances (each on its own
engine, as separate hub processes would be). After the run, the root computed
from the stored nodes is checked against the root recomputed from every leaf.
"""

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from onceonly.hub.audit import leaves, merkle, tree
from onceonly.hub.audit.service import AuditLog
from onceonly.hub.db import make_engine
from onceonly.hub.migrate import upgrade

from _processes import fresh_postgres_database, postgres_cpu_seconds

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Options:
    database: str
    postgres_url: str
    appenders: int
    writers: int
    batch_size: int
    duration: float
    warmup: float


def sample_entries(count: int) -> list[dict[str, Any]]:
    """Entries shaped like a record query's (pseudonym, purpose, grant, commitment)."""
    return [
        leaves.build_entry(
            time=datetime.now(UTC),
            action="record.query",
            outcome="ok",
            request_id=f"{n:032x}",
            client="social-welfare-app",
            department="social-welfare",
            item="civil-registry.address",
            version=1,
            subject=f"{n * 7919:064x}",
            purpose="benefit-eligibility",
            grant=f"g{n % 50:031d}",
            commitment="hmac-sha256:" + f"{n:064x}",
        )
        for n in range(count)
    ]


async def appender(log: AuditLog, entries: list[dict[str, Any]], counts: list[int]) -> None:
    n = 0
    while True:
        await log.append(entries[n % len(entries)])
        counts[0] += 1
        n += 1


async def measure(url: str, options: Options) -> dict[str, Any]:
    engines = [make_engine(url) for _ in range(options.writers)]
    logs = [AuditLog(engine, batch_size=options.batch_size) for engine in engines]
    for log in logs:
        await log.start()
    entries = sample_entries(4096)
    counts = [0]
    tasks = [
        asyncio.create_task(appender(logs[i % len(logs)], entries, counts))
        for i in range(options.appenders)
    ]
    with contextlib.ExitStack() as stack:
        server_cpu = None
        if url.startswith("postgresql"):
            server_cpu = stack.enter_context(postgres_cpu_seconds(url))
        await asyncio.sleep(options.warmup)
        start_count, start = counts[0], time.perf_counter()
        cpu = time.process_time()
        postgres_start = server_cpu() if server_cpu else 0.0
        await asyncio.sleep(options.duration)
        appended, elapsed = counts[0] - start_count, time.perf_counter() - start
        cpu = time.process_time() - cpu
        postgres = server_cpu() - postgres_start if server_cpu else None
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for log in logs:
        await log.stop()
    size, stored_root, leaf_root = await check_tree(engines[0])
    for engine in engines:
        await engine.dispose()
    return {
        "entries_per_second": round(appended / elapsed),
        "cpu_ms_per_entry": round(cpu * 1000 / max(appended, 1), 4),
        # PostgreSQL's own CPU per appended entry (None on SQLite: it runs in-process)
        "postgres_cpu_ms_per_entry": (
            None if postgres is None else round(postgres * 1000 / max(appended, 1), 4)
        ),
        "tree_size": size,
        "root_from_nodes_matches_leaves": stored_root == leaf_root,
    }


async def check_tree(engine: Any) -> tuple[int, bytes, bytes]:
    import sqlalchemy as sa

    async with engine.connect() as conn:
        size = await tree.current_size(conn)
        stored = await tree.root_at(conn, size)
        rows = await conn.execute(sa.text("SELECT leaf_hash FROM audit_entries ORDER BY idx"))
        recomputed = merkle.root_of(bytes(r[0]) for r in rows)
    return size, stored, recomputed


@contextlib.contextmanager
def database(options: Options) -> Iterator[str]:
    if options.database == "postgres":
        with fresh_postgres_database(options.postgres_url) as url:
            upgrade(url)
            yield url
        return
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{directory}/bench.db"
        upgrade(url)
        yield url


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--appenders", type=int, default=512)
    parser.add_argument("--writers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    return Options(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    with database(options) as url:
        result = asyncio.run(measure(url, options))
    result = {"options": asdict(options), **result, "cpus": os.cpu_count()}
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"audit-append-{options.database}-{stamp}.json").write_text(
        json.dumps(result, indent=2)
    )
    print(json.dumps(result, indent=2))
    return 0 if result["root_from_nodes_matches_leaves"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
