"""Auditors' filtered queries over a large log: latency at 1,000,000 entries.

``python bench/audit_query.py [--database sqlite|postgres] [--entries 1000000]
[--repeat 30]``; see bench/README.md.

Method: the log is filled with realistic entries (record queries of 40 consumer
departments over 17 items, 200,000 subjects, 3 % refusals, token issues and
registry changes), appended in batches of 20,000 through the hub's own append
(leaves and tree nodes, so the log verifies). A hub then runs on
loopback over that database, and the bench asks ``GET /v1/audit/entries`` (the
administrator's token, ``limit=100``) with each filter ``--repeat`` times,
reporting the median and p95 wall time per query, HTTP included. Every query is
itself appended to the log, as in production.
"""

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from onceonly.hub.app import create_app
from onceonly.hub.audit import leaves
from onceonly.hub.audit.service import append_rows
from onceonly.hub.cli.servers import loopback_socket, serve_in_thread, url_of
from onceonly.hub.config import Settings
from onceonly.hub.db import make_engine, make_sync_engine, write_connection
from onceonly.hub.keys import HubKeys
from onceonly.hub.migrate import upgrade

from _processes import fresh_postgres_database

RESULTS = Path(__file__).parent / "results"
ITEMS = [f"domain{n}.item-{n}" for n in range(17)]
DEPARTMENTS = [f"department-{n:02d}" for n in range(40)]
CHUNK = 20_000


@dataclass(frozen=True)
class Options:
    database: str
    postgres_url: str
    entries: int
    repeat: int


def _entry(n: int, *, rng: random.Random, keys: HubKeys, start: datetime) -> dict[str, Any]:
    moment = start + timedelta(milliseconds=n * 3)
    kind = rng.random()
    department = rng.choice(DEPARTMENTS)
    if kind < 0.05:
        return leaves.build_entry(
            time=moment,
            action="token.issue",
            outcome="ok",
            department=department,
            client=f"{department}-adapter",
        )
    if kind < 0.051:
        return leaves.build_entry(
            time=moment,
            action="grant.create",
            outcome="ok",
            department=department,
            item=rng.choice(ITEMS),
            client="administrator",
        )
    refused = rng.random() < 0.03
    return leaves.build_entry(
        time=moment,
        action="record.query",
        outcome="refused" if refused else "ok",
        reason="no-grant" if refused else None,
        department=department,
        client=f"{department}-adapter",
        item=rng.choice(ITEMS),
        version=1,
        subject=keys.pseudonym(f"{rng.randrange(200_000):011d}"),
        purpose="benefit-eligibility",
        request_id=f"{n:032x}",
    )


async def _fill(url: str, *, entries: int, keys: HubKeys) -> None:
    rng = random.Random(6962)
    start = datetime.now(UTC) - timedelta(milliseconds=entries * 3)
    engine = make_engine(url)
    for first in range(0, entries, CHUNK):
        batch = [
            _entry(n, rng=rng, keys=keys, start=start)
            for n in range(first, min(first + CHUNK, entries))
        ]
        async with write_connection(
            engine
        ) as conn:  # leaves and tree nodes, as the hub writes them
            await append_rows(conn, [(entry, leaves.leaf_bytes(entry)) for entry in batch])
    await engine.dispose()


def fill(url: str, *, entries: int, keys: HubKeys) -> float:
    """Append ``entries`` entries in large batches through the hub's own append; seconds."""
    began = time.perf_counter()
    asyncio.run(_fill(url, entries=entries, keys=keys))
    engine = make_sync_engine(url)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("ANALYZE audit_entries"))
        else:
            conn.execute(sa.text("ANALYZE"))
    engine.dispose()
    return time.perf_counter() - began


def _filters(keys: HubKeys, entries: int) -> dict[str, dict[str, str]]:
    middle = datetime.now(UTC) - timedelta(milliseconds=entries * 3 // 2)
    return {
        "subject": {"subject": f"{4242:011d}"},
        "department": {"department": "department-07"},
        "item + action": {"item": ITEMS[3], "action": "record.query"},
        "outcome refused": {"outcome": "refused"},
        "department + time range": {
            "department": "department-21",
            "since": middle.isoformat(),
            "until": (middle + timedelta(minutes=10)).isoformat(),
        },
        "subject + item": {"subject": f"{777:011d}", "item": ITEMS[5]},
    }


def measure(url: str, token: str, *, keys: HubKeys, entries: int, repeat: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        for name, params in _filters(keys, entries).items():
            timings, returned = [], 0
            for _ in range(repeat):
                began = time.perf_counter()
                response = http.get("/v1/audit/entries", params={**params, "limit": "100"})
                timings.append((time.perf_counter() - began) * 1000)
                response.raise_for_status()
                returned = len(response.json()["entries"])
            timings.sort()
            results[name] = {
                "median_ms": round(statistics.median(timings), 2),
                "p95_ms": round(timings[int(len(timings) * 0.95) - 1], 2),
                "returned": returned,
            }
    return results


@contextlib.contextmanager
def _database(options: Options, tmp: Path) -> Iterator[str]:
    if options.database == "sqlite":
        yield f"sqlite:///{tmp / 'hub.db'}"
    else:
        with fresh_postgres_database(options.postgres_url) as url:
            yield url


def run(options: Options) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, _database(options, Path(tmp)) as url:
        upgrade(url)
        keys = HubKeys.load(Path(tmp) / "keys", create=True)
        seconds = fill(url, entries=options.entries, keys=keys)
        print(f"filled {options.entries:,} entries in {seconds:.1f} s")
        sock = loopback_socket()
        settings = Settings(
            data_dir=Path(tmp),
            database_url=url,
            issuer=url_of(sock),
            log_level="WARNING",
            log_json=False,
        )
        with serve_in_thread(create_app(settings, keys=keys), sock) as hub_url:
            results = measure(
                hub_url, keys.admin_token, keys=keys, entries=options.entries, repeat=options.repeat
            )
    return {"database": options.database, "entries": options.entries, "queries": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    report = run(Options(args.database, args.postgres_url, args.entries, args.repeat))
    print(f"\n{'filter':26} {'median ms':>10} {'p95 ms':>8} {'rows':>5}")
    for name, result in report["queries"].items():
        print(f"{name:26} {result['median_ms']:>10} {result['p95_ms']:>8} {result['returned']:>5}")
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"audit-query-{args.database}-{stamp}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
