"""Exchange throughput and latency through the hub, against a direct baseline.

Method. The hub (``uvicorn --factory onceonly.hub.app:create_app_from_environment``, a fresh
SQLite data dir or a fresh PostgreSQL database) and the owner's adapter (the
civil registry, ``adapters.create_provider_app`` with 1,000 address records) run
as two separate server processes on 127.0.0.1. This process is the consumer (the
social-welfare department's client) and the load generator: C closed-loop workers
on one ``httpx.AsyncClient`` pool, random subjects, one fixed-length round at a time.

- **hub**: ``POST /v1/items/person.residential-address/records/query`` at the hub
  with an access token got once per round (private_key_jwt, docs/protocol.md §2).
  The hub authenticates, authorizes, calls the adapter, validates, audits, answers.
- **direct**: the same query straight to the adapter, with a hub request token per
  request (docs/protocol.md §4) signed with the hub's own key, so that the adapter
  does all its normal work (signature, claims, jti replay check, store read, schema
  validation, served-log). Tokens are minted before the round, outside the timing.

The two paths alternate (direct, hub, direct, hub, ...) after one discarded warm-up
round each; the report gives the median over rounds and the ratio of the medians.
CPU milliseconds per request of every process come from ``/proc/<pid>/stat``.

Run: ``python bench/exchange.py [--concurrency 16] [--duration 10]
[--database sqlite|postgres] [--profile]``; see bench/README.md.
"""

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey
from onceonly.adapters import DPoPKey, RecordStore, public_jwks
from onceonly.hub.cli.admin_client import AdminClient
from onceonly.hub.exchange.request_tokens import mint_request_token
from onceonly.hub.keys import HubKeys

from _load import RoundResult, Send, Watched, run_round
from _processes import (
    Server,
    adapter_command,
    free_port,
    fresh_postgres_database,
    hub_command,
    hub_environment,
    postgres_cpu_seconds,
    running,
)
from _profile import Summary, py_spy, recording, summarize

REPOSITORY = Path(__file__).resolve().parent.parent
CATALOGUE = REPOSITORY / "schemas"
RESULTS = REPOSITORY / "bench" / "results"
OWNER, CONSUMER, CONSUMER_CLIENT = "civil-registry", "social-welfare", "social-welfare-adapter"
ITEM, PURPOSE = "person.residential-address", "benefit-eligibility"
QUERY_PATH = f"/v1/items/{ITEM}/records/query"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CALIBRATION_SECONDS = (0.5, 2.0)


@dataclass(frozen=True)
class Options:
    concurrency: int
    duration: float
    warmup: float
    rounds: int
    subjects: int
    database: str
    postgres_url: str
    profile: bool
    bearer: bool = False


@dataclass(frozen=True)
class World:
    hub: Server
    adapter: Server
    hub_keys: HubKeys
    consumer_key: ECKey
    subjects: list[str]
    postgres_cpu: Callable[[], float | None] | None = None

    @property
    def servers(self) -> dict[str, int]:
        return {"hub": self.hub.pid, "adapter": self.adapter.pid}

    @property
    def watched(self) -> Watched:
        if self.postgres_cpu is None:
            return dict(self.servers)
        return {**self.servers, "postgres": self.postgres_cpu}


# -- the world: two servers, a catalogue, a grant, records ------------------------


def address_records(count: int) -> list[tuple[str, dict[str, Any]]]:
    """``count`` valid residential addresses, varied from the catalogue's examples."""
    item = json.loads((CATALOGUE / "items" / f"{ITEM}.json").read_text())
    examples = item["examples"]
    return [
        (
            str(38001010000 + number),
            {**examples[number % len(examples)], "street": f"Pikk {number + 1}"},
        )
        for number in range(count)
    ]


def adapter_config(path: Path, *, hub_url: str, port: int, data_dir: Path) -> Path:
    path.write_text(
        f'department = "{OWNER}"\nhub_url = "{hub_url}"\nlisten = "127.0.0.1:{port}"\n'
        f'data_dir = "{data_dir}"\n\n[items."{ITEM}"]\nsource = "store"\n'
    )
    return path


def fill_store(store_path: Path, count: int) -> list[str]:
    schema = json.loads((CATALOGUE / "items" / f"{ITEM}.json").read_text())["schema"]
    records = address_records(count)
    with RecordStore(store_path) as store:
        store.import_records(ITEM, records, schema)
    return [subject for subject, _ in records]


def register(admin: AdminClient, *, adapter_url: str, consumer_key: ECKey) -> None:
    admin.import_catalogue(CATALOGUE)
    admin.put_department(OWNER, name="Civil Registry Office", adapter_url=adapter_url)
    admin.put_client(CONSUMER_CLIENT, department=CONSUMER, jwks=public_jwks(consumer_key))
    admin.create_grant(
        consumer=CONSUMER, item=ITEM, purpose=PURPOSE, legal_basis="Social Welfare Act §12"
    )


@contextmanager
def world(options: Options, root: Path) -> Iterator[World]:
    with ExitStack() as stack:
        database_url = None
        if options.database == "postgres":
            database_url = stack.enter_context(fresh_postgres_database(options.postgres_url))
        hub_port, adapter_port, data_dir = free_port(), free_port(), root / "hub"
        env = hub_environment(port=hub_port, data_dir=data_dir, database_url=database_url)
        hub = stack.enter_context(running("hub", hub_command(hub_port), port=hub_port, env=env))
        subjects = fill_store(root / "owner" / "records.db", options.subjects)
        config = adapter_config(
            root / "owner.toml", hub_url=hub.url, port=adapter_port, data_dir=root / "owner"
        )
        adapter = stack.enter_context(
            running("adapter", adapter_command(config), port=adapter_port, env=env)
        )
        keys = HubKeys.load(data_dir / "keys", create=False)
        consumer_key = ECKey.generate_key("P-256", auto_kid=True)
        with AdminClient(hub.url, keys.admin_token) as admin:
            register(admin, adapter_url=adapter.url, consumer_key=consumer_key)
        sampler = None
        if database_url is not None:
            sampler = stack.enter_context(postgres_cpu_seconds(database_url))
        yield World(hub, adapter, keys, consumer_key, subjects, sampler)


# -- the two paths -----------------------------------------------------------------


def access_token(world: World, dpop: DPoPKey | None) -> str:
    """A client-credentials access token, authenticated with private_key_jwt and bound
    to ``dpop`` (RFC 9449 §5)."""
    now = int(time.time())
    claims = {
        "iss": CONSUMER_CLIENT,
        "sub": CONSUMER_CLIENT,
        "aud": world.hub.url,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    assertion = jwt.encode(
        {"alg": "ES256", "kid": world.consumer_key.kid}, claims, world.consumer_key
    )
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    url = world.hub.url + "/oauth/token"
    headers = {"DPoP": dpop.proof("POST", url)} if dpop else {}
    response = httpx.post(url, data=form, headers=headers)
    response.raise_for_status()
    return str(response.json()["access_token"])


def through_hub(world: World, *, bearer: bool = False) -> Send:
    """Each request carries its own DPoP proof (signed here, as a consumer would), or
    with ``bearer`` an unbound token (the hub then runs with require_dpop=false)."""
    url = world.hub.url + QUERY_PATH
    dpop = DPoPKey.generate()
    token = access_token(world, None if bearer else dpop)
    if bearer:
        headers = {"Authorization": f"Bearer {token}"}

        async def send_bearer(client: httpx.AsyncClient, subject: str) -> int:
            body = {"subject": subject, "purpose": PURPOSE}
            return (await client.post(url, json=body, headers=headers)).status_code

        return send_bearer

    async def send(client: httpx.AsyncClient, subject: str) -> int:
        body = {"subject": subject, "purpose": PURPOSE}
        headers = dpop.headers("POST", url, token)
        return (await client.post(url, json=body, headers=headers)).status_code

    return send


class RequestTokens:
    """Single-use hub request tokens, minted ahead of a direct round.

    Each token binds one subject; a pooled token brings its own (random) subject.
    When the pool runs dry the token is minted inline, and counted.
    """

    def __init__(self, world: World) -> None:
        self._world = world
        self._pool: deque[tuple[str, str, str]] = deque()
        self.inline = 0
        self.mint_us = 0.0

    def fill(self, count: int, subjects: list[str], seed: int) -> None:
        chooser = random.Random(seed)
        started = time.perf_counter()
        self._pool = deque(self._mint(chooser.choice(subjects)) for _ in range(count))
        self.mint_us = (time.perf_counter() - started) * 1e6 / max(1, count)
        self.inline = 0

    def take(self, subject: str) -> tuple[str, str, str]:
        if self._pool:
            return self._pool.popleft()
        self.inline += 1
        return self._mint(subject)

    def _mint(self, subject: str) -> tuple[str, str, str]:
        request_id = uuid.uuid4().hex
        token = mint_request_token(
            key=self._world.hub_keys.signing,
            issuer=self._world.hub.url,
            owner=OWNER,
            consumer=CONSUMER,
            item=ITEM,
            version=1,
            purpose=PURPOSE,
            subject=subject,
            request_id=request_id,
            now=int(time.time()),
            lifetime=60,
        )
        return subject, token, request_id


def direct(world: World, tokens: RequestTokens) -> Send:
    url = world.adapter.url + QUERY_PATH

    async def send(client: httpx.AsyncClient, subject: str) -> int:
        subject, token, request_id = tokens.take(subject)
        headers = {"Authorization": f"Bearer {token}", "X-Request-Id": request_id}
        body = {"subject": subject, "purpose": PURPOSE, "consumer": CONSUMER, "version": 1}
        return (await client.post(url, json=body, headers=headers)).status_code

    return send


# -- rounds ------------------------------------------------------------------------


@dataclass
class Runner:
    world: World
    options: Options
    tokens: RequestTokens
    direct_rate: float = 0.0
    inline_mints: dict[str, int] = field(default_factory=dict)

    async def round(self, path: str, number: int, *, warmup: float, duration: float) -> RoundResult:
        if path == "direct":
            expected = max(self.direct_rate, 500.0) * 1.5 * (warmup + duration) + 200
            self.tokens.fill(round(expected), self.world.subjects, seed=number)
        send = (
            direct(self.world, self.tokens)
            if path == "direct"
            else through_hub(self.world, bearer=self.options.bearer)
        )
        result = await run_round(
            send,
            path=path,
            number=number,
            subjects=self.world.subjects,
            concurrency=self.options.concurrency,
            warmup=warmup,
            duration=duration,
            watched=self.world.watched,
        )
        if path == "direct":
            self.direct_rate = max(self.direct_rate, result.throughput)
            self.inline_mints[f"{path}-{number}"] = self.tokens.inline
        return result

    async def calibrate(self) -> None:
        """One short discarded round per path: JWKS and schema caches, connection
        pools, and a first estimate of how many tokens a direct round uses."""
        for path in ("direct", "hub"):
            await self.round(
                path, 0, warmup=CALIBRATION_SECONDS[0], duration=CALIBRATION_SECONDS[1]
            )

    async def measured(self) -> list[RoundResult]:
        results = []
        for number in range(1, self.options.rounds + 1):
            for path in ("direct", "hub"):
                result = await self.round(
                    path, number, warmup=self.options.warmup, duration=self.options.duration
                )
                print_round(result)
                results.append(result)
        return results


# -- report ------------------------------------------------------------------------


def median_of(results: list[RoundResult], path: str) -> dict[str, Any]:
    rounds = [r for r in results if r.path == path]
    latency = {
        key: round(statistics.median(r.latency_ms[key] for r in rounds), 2)
        for key in ("p50", "p95", "p99", "mean")
    }
    cpu = {
        name: round(
            statistics.median(v for r in rounds if (v := r.cpu_ms_per_request[name]) is not None), 3
        )
        for name in rounds[0].cpu_ms_per_request
        if all(r.cpu_ms_per_request[name] is not None for r in rounds)
    }
    errors = sum(sum(r.errors.values()) for r in rounds)
    return {
        "throughput": round(statistics.median(r.throughput for r in rounds), 1),
        "latency_ms": latency,
        "cpu_ms_per_request": cpu,
        "errors": errors,
        "rounds": len(rounds),
    }


def print_round(result: RoundResult) -> None:
    latency = result.latency_ms
    cpu = " ".join(f"{k}={v}" for k, v in result.cpu_ms_per_request.items() if v is not None)
    print(
        f"  round {result.round} {result.path:6} {result.throughput:8.1f} req/s  "
        f"p50 {latency.get('p50', 0):6.2f}  p95 {latency.get('p95', 0):6.2f}  "
        f"p99 {latency.get('p99', 0):6.2f} ms  errors {result.errors or 0}  cpu ms/req: {cpu}",
        flush=True,
    )


def print_table(summary: dict[str, dict[str, Any]], ratio: float) -> None:
    print(
        f"\n{'path':8}{'req/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"   CPU ms/request (hub, adapter, loadgen, postgres)"
    )
    for path, row in summary.items():
        latency, cpu = row["latency_ms"], row["cpu_ms_per_request"]
        names = ("hub", "adapter", "loadgen", "postgres")
        cpu_text = ", ".join(str(cpu.get(name, "-")) for name in names)
        print(
            f"{path:8}{row['throughput']:>10.1f}{latency['p50']:>9.2f}{latency['p95']:>9.2f}"
            f"{latency['p99']:>9.2f}{row['errors']:>8}   {cpu_text}"
        )
    verdict = "meets" if ratio >= 0.5 else "is below"
    print(f"\nhub/direct throughput: {ratio:.2f}x ({verdict} the >= 0.5x goal)")
    for name, rate in sizing(summary).items():
        print(f"sizing: one {name} core carries about {rate:.0f} exchanges/s")


def sizing(summary: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Exchanges per second one core of each process kind carries at this CPU cost
    (1000 / CPU ms per exchange on the hub path): the numbers to size a deployment."""
    cpu = summary["hub"]["cpu_ms_per_request"]
    return {
        {"hub": "hub process", "postgres": "PostgreSQL"}[name]: 1000.0 / cpu[name]
        for name in ("hub", "postgres")
        if cpu.get(name)
    }


def print_profile(name: str, summary: Summary, path: Path) -> None:
    print(f"\nprofile of the {name} ({summary.samples} samples, {path}):")
    for title, rows in (
        ("on CPU, by package", summary.libraries),
        ("on CPU, by function (self)", summary.self_top),
        ("project functions on the stack (inclusive)", summary.project_inclusive),
        ("library called by the innermost project function", summary.callees),
    ):
        print(f"  {title}:")
        for label, count in rows:
            print(f"    {100 * count / max(1, summary.samples):5.1f}%  {label}")


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPOSITORY, capture_output=True, text=True, check=False
        ).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (
        "-dirty" if git("status", "--porcelain", "--", "hub", "adapters") else ""
    )


# -- main --------------------------------------------------------------------------


async def profile_round(runner: Runner, stamp: str) -> dict[str, Any]:
    """One extra hub round with py-spy on the hub and the adapter (not in the medians)."""
    seconds = runner.options.warmup + runner.options.duration
    outputs = {name: RESULTS / f"exchange-{stamp}-{name}.txt" for name in ("hub", "adapter")}
    with ExitStack() as stack:
        for name, pid in runner.world.servers.items():
            stack.enter_context(recording(pid, output=outputs[name], seconds=seconds))
        result = await runner.round(
            "hub", 99, warmup=runner.options.warmup, duration=runner.options.duration
        )
    print_round(result)
    report: dict[str, Any] = {"round_under_profiler": asdict(result)}
    for name, output in outputs.items():
        summary = summarize(output)
        print_profile(name, summary, output)
        report[name] = {"file": str(output.relative_to(REPOSITORY)), **asdict(summary)}
    return report


async def bench(options: Options, world_: World, stamp: str) -> dict[str, Any]:
    runner = Runner(world_, options, RequestTokens(world_))
    await runner.calibrate()
    results = await runner.measured()
    summary = {path: median_of(results, path) for path in ("direct", "hub")}
    ratio = summary["hub"]["throughput"] / summary["direct"]["throughput"]
    print_table(summary, ratio)
    report: dict[str, Any] = {
        "summary": summary,
        "ratio_hub_over_direct": round(ratio, 3),
        "sizing_exchanges_per_core_second": {k: round(v, 1) for k, v in sizing(summary).items()},
        "request_token_mint_us": round(runner.tokens.mint_us, 1),
        "inline_minted_tokens": runner.inline_mints,
        "rounds": [asdict(r) for r in results],
    }
    if options.profile:
        if py_spy() is None:
            print("\n--profile: py-spy is not installed (pip install py-spy); no profile taken")
        else:
            report["profile"] = await profile_round(runner, stamp)
    return report


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent workers")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per round")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per path (alternating)")
    parser.add_argument("--subjects", type=int, default=1000, help="records in the owner's store")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="server where a fresh database is created and dropped (--database postgres)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy an extra hub round")
    parser.add_argument(
        "--bearer",
        action="store_true",
        help="unbound Bearer tokens on a hub with require_dpop=false (the cost of DPoP)",
    )
    return Options(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    if options.bearer:  # inherited by the hub process (hub_environment)
        os.environ["ONCEONLY_REQUIRE_DPOP"] = "false"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    print(f"exchange bench: {options}", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="onceonly-bench-") as root,
        world(options, Path(root)) as world_,
    ):
        report = asyncio.run(bench(options, world_, stamp))
    report["meta"] = {
        "date": stamp,
        "commit": commit(),
        "python": sys.version.split()[0],
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs",
        "options": asdict(options),
    }
    output = RESULTS / f"exchange-{stamp}.json"
    output.write_text(json.dumps(report, indent=2))
    print(f"\nresults: {output.relative_to(REPOSITORY)}")
    errors = sum(row["errors"] for row in report["summary"].values())
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
