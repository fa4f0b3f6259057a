"""Exchange throughput, latency and CPU per request: consumer to the owner's adapter
directly, through a plain nginx hop, and through the hub, in one run.

Method. The hub (``onceonly serve --workers N``, a fresh SQLite data dir or a fresh
PostgreSQL database), the owner's adapter (the civil registry,
``adapters.create_provider_app`` with 1,000 address records) and nginx (a minimal
reverse proxy to the adapter, unprivileged, in the foreground) run as separate
server processes on 127.0.0.1. This process is the consumer (the social-welfare
department's client); the load comes from wrk (a C load generator), 16 connections,
replaying requests built before each round (``bench/_wrk.py``, ``bench/exchange.lua``):

- **direct**: ``POST /v1/items/person.residential-address/records/query`` straight
  to the adapter, each request with its own hub request token (docs/protocol.md §4,
  signed with the hub's own key), so that the adapter does all its normal work
  (signature, claims, jti replay check, store read, schema validation, served-log).
- **nginx**: the same requests through nginx: what a plain proxy hop costs.
- **hub**: the query at the hub with an access token got once per round
  (private_key_jwt, docs/protocol.md §2) and a DPoP proof per request. The hub
  authenticates, authorizes, calls the adapter, validates, audits, answers.

After one discarded calibration round per path the paths alternate for ``--rounds``
rounds (a warm-up wrk run, then the measured one); the report gives the median over
rounds. Then direct and hub run once more paced at half the hub's maximum rate, for
the latency the hub adds when it is not saturated. CPU milliseconds per request of
every process come from ``/proc``; every hub round checks that each answered
exchange was audited. ``--generator python`` keeps the earlier closed-loop Python
load generator (``bench/_load.py``).

Run: ``python bench/exchange.py [--database sqlite|postgres] [--hub-workers 1,2]
[--connections 16] [--duration 10] [--generator wrk|python] [--profile]``;
see bench/README.md.
"""

import argparse
import asyncio
import json
import math
import os
import platform
import random
import signal
import sqlite3
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
import psycopg
from joserfc import jwt
from joserfc.jwk import ECKey
from onceonly.adapters import DPoPKey, RecordStore, public_jwks
from onceonly.hub.cli.admin_client import AdminClient
from onceonly.hub.exchange.request_tokens import mint_request_token
from onceonly.hub.keys import HubKeys

from _load import RoundResult, Send, run_round
from _processes import (
    Server,
    Watched,
    adapter_command,
    free_port,
    fresh_postgres_database,
    hub_command,
    hub_environment,
    nginx_command,
    pin_tree,
    postgres_cpu_seconds,
    prepare_hub,
    running,
    sample_cpu,
    tree_cpu_seconds,
)
from _profile import Summary, py_spy, recording, summarize
from _wrk import WrkResult, raw_request, run_wrk, write_requests

REPOSITORY = Path(__file__).resolve().parent.parent
CATALOGUE = REPOSITORY / "schemas"
RESULTS = REPOSITORY / "bench" / "results"
OWNER, CONSUMER, CONSUMER_CLIENT = "civil-registry", "social-welfare", "social-welfare-adapter"
ITEM, PURPOSE = "person.residential-address", "benefit-eligibility"
QUERY_PATH = f"/v1/items/{ITEM}/records/query"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
PATHS = ("direct", "nginx", "hub")
CALIBRATION_SECONDS = (0.5, 2.0)
FIRST_GUESS_RATE = 800.0  # requests/s to pre-mint for before a path was measured
# The adapter's paths (direct, nginx) share their best rate, and never plan for less than
# ADAPTER_FLOOR/s: a cold or starved calibration round measured 50/s once, and the next
# round, five times faster, ran out of requests.
ADAPTER_FLOOR = 300.0
MINT_MARGIN = (2.5, 500)  # pre-mint rate x seconds x 2.5 + 500: rates vary 2x on a shared machine
# The longest an adapter accepts (adapters/_reqtoken.py): tens of thousands of tokens are
# minted (about 1 ms each here) before a round's warm-up, and the first is sent last.
REQUEST_TOKEN_LIFETIME = 120


@dataclass(frozen=True)
class Options:
    connections: int
    duration: float
    warmup: float
    rounds: int
    subjects: int
    database: str
    postgres_url: str
    profile: bool
    generator: str = "wrk"
    paths: tuple[str, ...] = PATHS
    hub_workers: tuple[int, ...] = (1,)
    threads: int = 2
    half_rate: bool = True
    paced_rate: float | None = None
    bearer: bool = False
    source: str = "worktree"
    pin: bool = False


@dataclass(frozen=True)
class World:
    hub: Server
    adapter: Server
    nginx: Server
    hub_keys: HubKeys
    consumer_key: ECKey
    subjects: list[str]
    hub_workers: int
    audit_count: Callable[[], int]
    postgres_cpu: Callable[[], float | None] | None = None

    @property
    def servers(self) -> dict[str, int]:
        return {"hub": self.hub.pid, "adapter": self.adapter.pid}

    @property
    def watched(self) -> Watched:
        watched: Watched = {
            "hub": lambda: tree_cpu_seconds(self.hub.pid),
            "adapter": self.adapter.pid,
            "nginx": lambda: tree_cpu_seconds(self.nginx.pid),
        }
        if self.postgres_cpu is not None:
            watched["postgres"] = self.postgres_cpu
        return watched

    def url(self, path: str) -> str:
        server = {"direct": self.adapter, "nginx": self.nginx, "hub": self.hub}[path]
        return server.url


# -- the world: three servers, a catalogue, a grant, records -----------------------


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


_AUDITED = "SELECT count(*) FROM audit_entries WHERE item = '" + ITEM + "'"


def audit_counter(*, data_dir: Path, database_url: str | None) -> Callable[[], int]:
    """How many audit entries name the item: one per exchange, answered or refused."""

    def sqlite_count() -> int:
        with sqlite3.connect(f"file:{data_dir / 'onceonly.db'}?mode=ro", uri=True) as conn:
            return int(conn.execute(_AUDITED).fetchone()[0])

    def postgres_count() -> int:
        with psycopg.connect(str(database_url)) as conn:
            row = conn.execute(_AUDITED).fetchone()
            return int(row[0]) if row else 0

    return sqlite_count if database_url is None else postgres_count


@contextmanager
def world(options: Options, root: Path, *, hub_workers: int) -> Iterator[World]:
    with ExitStack() as stack:
        database_url = None
        if options.database == "postgres":
            database_url = stack.enter_context(fresh_postgres_database(options.postgres_url))
        hub_port, adapter_port, nginx_port = free_port(), free_port(), free_port()
        data_dir = root / "hub"
        env = hub_environment(port=hub_port, data_dir=data_dir, database_url=database_url)
        prepare_hub(env)
        hub = stack.enter_context(
            running("hub", hub_command(hub_port, workers=hub_workers), port=hub_port, env=env)
        )
        subjects = fill_store(root / "owner" / "records.db", options.subjects)
        config = adapter_config(
            root / "owner.toml", hub_url=hub.url, port=adapter_port, data_dir=root / "owner"
        )
        adapter = stack.enter_context(
            running("adapter", adapter_command(config), port=adapter_port, env=env)
        )
        proxy = nginx_command(prefix=root / "nginx", port=nginx_port, upstream_port=adapter_port)
        nginx = stack.enter_context(running("nginx", proxy, port=nginx_port, env=env))
        keys = HubKeys.load(data_dir / "keys", create=False)
        consumer_key = ECKey.generate_key("P-256", auto_kid=True)
        with AdminClient(hub.url, keys.admin_token) as admin:
            register(admin, adapter_url=adapter.url, consumer_key=consumer_key)
        sampler = None
        if database_url is not None:
            sampler = stack.enter_context(postgres_cpu_seconds(database_url))
        if options.pin:
            stack.callback(os.sched_setaffinity, 0, os.sched_getaffinity(0))
            pin_sides(hub=hub.pid, owner=(adapter.pid, nginx.pid))
        yield World(
            hub=hub,
            adapter=adapter,
            nginx=nginx,
            hub_keys=keys,
            consumer_key=consumer_key,
            subjects=subjects,
            hub_workers=hub_workers,
            audit_count=audit_counter(data_dir=data_dir, database_url=database_url),
            postgres_cpu=sampler,
        )


def pin_sides(*, hub: int, owner: tuple[int, ...]) -> None:
    """``--pin``: the hub's processes and threads on the first CPU; the owner's side
    (adapter, nginx) and the consumer's (this process, so wrk and the Python generator
    too) on the second. Each side then has a core of its own, as on separate hosts,
    and the hub's latency is not its neighbours' CPU scheduling. PostgreSQL, started
    before the bench, is not moved."""
    first, second, *_ = sorted(os.sched_getaffinity(0))
    pin_tree(hub, {first})
    for pid in owner:
        pin_tree(pid, {second})
    os.sched_setaffinity(0, {second})


# -- what the consumer sends ---------------------------------------------------------


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


def request_token(world: World, subject: str) -> tuple[str, str]:
    """A single-use hub request token for ``subject`` (docs/protocol.md §4), and its
    request id."""
    request_id = uuid.uuid4().hex
    token = mint_request_token(
        key=world.hub_keys.signing,
        issuer=world.hub.url,
        owner=OWNER,
        consumer=CONSUMER,
        item=ITEM,
        version=1,
        purpose=PURPOSE,
        subject=subject,
        request_id=request_id,
        now=int(time.time()),
        lifetime=REQUEST_TOKEN_LIFETIME,
    )
    return token, request_id


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


class HubCredentials:
    """The consumer's DPoP key and an access token bound to it (or, with ``bearer``,
    an unbound one), renewed per round: the token lives 5 minutes."""

    def __init__(self, world: World, *, bearer: bool) -> None:
        self._world, self._bearer = world, bearer
        self.dpop = DPoPKey.generate()
        self.token = access_token(world, None if bearer else self.dpop)

    def renew(self) -> None:
        self.token = access_token(self._world, None if self._bearer else self.dpop)

    def headers(self) -> dict[str, str]:
        if self._bearer:
            return {"Authorization": f"Bearer {self.token}"}
        return self.dpop.headers("POST", self._world.hub.url + QUERY_PATH, self.token)


def prebuilt_requests(
    world: World, path: str, *, count: int, seed: int, hub: HubCredentials
) -> Iterator[bytes]:
    """``count`` requests for ``path``, each with its own single-use token or proof."""
    chooser = random.Random(seed)
    host = world.url(path).removeprefix("http://")
    for _ in range(count):
        subject = chooser.choice(world.subjects)
        if path == "hub":
            headers = hub.headers()
            body = _json({"subject": subject, "purpose": PURPOSE})
        else:
            token, request_id = request_token(world, subject)
            headers = {"Authorization": f"Bearer {token}", "X-Request-Id": request_id}
            body = _json(
                {"subject": subject, "purpose": PURPOSE, "consumer": CONSUMER, "version": 1}
            )
        headers["Content-Type"] = "application/json"
        yield raw_request(method="POST", target=QUERY_PATH, host=host, headers=headers, body=body)


# -- one round ------------------------------------------------------------------------


@dataclass(frozen=True)
class PathRound:
    """One measured round of one path, from either load generator."""

    path: str
    round: int
    throughput: float
    answered: int
    seconds: float
    latency_ms: dict[str, float]
    errors: dict[str, int]
    cpu_ms_per_request: dict[str, float | None]
    rate: float | None = None
    sent: int | None = None
    prebuilt: int | None = None
    audited: int | None = None
    load_average: float | None = None  # the 1-minute load average at the round's end


def requests_needed(rate: float, seconds: float) -> int:
    """How many requests to pre-build for ``seconds`` at up to ``rate`` per second."""
    factor, extra = MINT_MARGIN
    return round(rate * seconds * factor + extra)


def cpu_per_request(
    before: dict[str, float | None], after: dict[str, float | None], answers: int
) -> dict[str, float | None]:
    """CPU ms per answer of each sampled process over the window."""
    return {
        name: None
        if (start := before.get(name)) is None or end is None or answers == 0
        else round((end - start) * 1000 / answers, 3)
        for name, end in after.items()
    }


def audit_problem(*, audited: int, answered: int, sent: int) -> str | None:
    """Each exchange answered must be audited before the answer, and nothing not sent
    can be: ``answered <= audited <= sent`` (the requests wrk had in flight when it
    stopped were sent and may be audited without an answer read)."""
    if audited < answered:
        return f"{answered - audited} answered exchanges have no audit entry"
    if audited > sent:
        return f"{audited - sent} more audit entries than requests sent"
    return None


def _rate_key(path: str) -> str:
    return "hub" if path == "hub" else "adapter"


@dataclass
class WrkRunner:
    """Rounds of wrk replaying pre-built requests; each path's best rate so far sizes
    how many requests the next round of that path pre-builds."""

    world: World
    options: Options
    workdir: Path
    hub: HubCredentials
    best_rate: dict[str, float] = field(default_factory=dict)
    audit_problems: list[str] = field(default_factory=list)

    def _prepare(
        self, path: str, seconds: float, *, seed: int, rate: float | None
    ) -> tuple[Path, int]:
        expected = rate or self._planned_rate(path)
        if path == "hub":
            self.hub.renew()
        output = self.workdir / f"{path}-{seed}.requests"
        count = requests_needed(expected, seconds)
        write_requests(
            output, prebuilt_requests(self.world, path, count=count, seed=seed, hub=self.hub)
        )
        return output, count

    def _planned_rate(self, path: str) -> float:
        best = self.best_rate.get(_rate_key(path), FIRST_GUESS_RATE)
        return best if path == "hub" else max(best, ADAPTER_FLOOR)

    def _wrk(self, path: str, requests: Path, seconds: float, rate: float | None) -> WrkResult:
        return run_wrk(
            url=self.world.url(path),
            requests_file=requests,
            connections=self.options.connections,
            threads=self.options.threads,
            seconds=seconds,
            rate=rate,
        )

    def round(
        self, path: str, number: int, *, warmup: float, duration: float, rate: float | None = None
    ) -> PathRound:
        seed = number * 10 + PATHS.index(path)
        warm = self._prepare(path, warmup, seed=seed + 1000, rate=rate) if warmup else None
        measured, prebuilt = self._prepare(path, duration, seed=seed, rate=rate)
        audited = self._settled_audit_count() if path == "hub" else 0
        runs = [self._wrk(path, warm[0], warmup, rate)] if warm is not None else []
        before = sample_cpu(self.world.watched)
        result = self._wrk(path, measured, duration, rate)
        after = sample_cpu(self.world.watched)
        cpu = cpu_per_request(before, after, result.responses)
        cpu["wrk"] = round(result.wrk_cpu_seconds * 1000 / max(1, result.responses), 3)
        if path == "hub":
            audited = self._settled_audit_count() - audited
            self._check_audit(number, audited=audited, runs=[*runs, result])
        if rate is None:  # size by every answer: a round of refusals still used requests
            answered = result.responses / max(result.seconds, 1e-3)
            key = _rate_key(path)
            self.best_rate[key] = max(self.best_rate.get(key, 0.0), answered)
        return PathRound(
            path=path,
            round=number,
            throughput=round(result.throughput, 1),
            answered=result.ok,
            seconds=round(result.seconds, 3),
            latency_ms=result.latency_ms,
            errors=result.errors,
            cpu_ms_per_request=cpu,
            rate=rate,
            sent=result.sent,
            prebuilt=prebuilt,
            audited=audited if path == "hub" else None,  # warm-up included
            load_average=round(os.getloadavg()[0], 2),
        )

    def _settled_audit_count(self, every: float = 0.25, limit: float = 15.0) -> int:
        """The audit count once the requests wrk left in flight are done: unchanged
        for four reads ``every`` seconds apart (or whatever it is after ``limit``)."""
        deadline, count, unchanged = time.monotonic() + limit, self.world.audit_count(), 0
        while unchanged < 4 and time.monotonic() < deadline:
            time.sleep(every)
            count, previous = self.world.audit_count(), count
            unchanged = unchanged + 1 if count == previous else 0
        return count

    def _check_audit(self, number: int, *, audited: int, runs: list[WrkResult]) -> None:
        """Over the warm-up and the measured run together: a warm-up's requests left
        in flight finish during the measured one."""
        problem = audit_problem(
            audited=audited,
            answered=sum(run.ok for run in runs),
            sent=sum(run.sent for run in runs),
        )
        if problem is not None:
            self.audit_problems.append(f"hub round {number}: {problem}")
            print(f"  AUDIT: {problem}", flush=True)


# -- the earlier Python load generator (--generator python) ---------------------------


class RequestTokens:
    """Single-use hub request tokens, minted ahead of a direct round.

    Each token binds one subject; a pooled token brings its own (random) subject.
    When the pool runs dry the token is minted inline, and counted.
    """

    def __init__(self, world: World) -> None:
        self._world = world
        self._pool: deque[tuple[str, str, str]] = deque()
        self.inline = 0

    def fill(self, count: int, subjects: list[str], seed: int) -> None:
        chooser = random.Random(seed)
        self._pool = deque(self._mint(chooser.choice(subjects)) for _ in range(count))
        self.inline = 0

    def take(self, subject: str) -> tuple[str, str, str]:
        if self._pool:
            return self._pool.popleft()
        self.inline += 1
        return self._mint(subject)

    def _mint(self, subject: str) -> tuple[str, str, str]:
        return (subject, *request_token(self._world, subject))


def python_send(world: World, path: str, tokens: RequestTokens, hub: HubCredentials) -> Send:
    url = world.url(path) + QUERY_PATH
    if path == "hub":
        hub.renew()

        async def send_to_hub(client: httpx.AsyncClient, subject: str) -> int:
            body = {"subject": subject, "purpose": PURPOSE}
            return (await client.post(url, json=body, headers=hub.headers())).status_code

        return send_to_hub

    async def send(client: httpx.AsyncClient, subject: str) -> int:
        subject, token, request_id = tokens.take(subject)
        headers = {"Authorization": f"Bearer {token}", "X-Request-Id": request_id}
        body = {"subject": subject, "purpose": PURPOSE, "consumer": CONSUMER, "version": 1}
        return (await client.post(url, json=body, headers=headers)).status_code

    return send


@dataclass
class PythonRunner:
    """Closed-loop rounds of ``bench/_load.py``: the bench process is the load
    generator (its CPU per request is ``loadgen``)."""

    world: World
    options: Options
    hub: HubCredentials
    best_rate: dict[str, float] = field(default_factory=dict)
    audit_problems: list[str] = field(default_factory=list)

    def round(
        self, path: str, number: int, *, warmup: float, duration: float, rate: float | None = None
    ) -> PathRound:
        if rate is not None:
            raise ValueError("the Python load generator runs closed-loop only")
        tokens = RequestTokens(self.world)
        if path != "hub":
            expected = self.best_rate.get(path, FIRST_GUESS_RATE)
            tokens.fill(requests_needed(expected, warmup + duration), self.world.subjects, number)
        result = asyncio.run(
            run_round(
                python_send(self.world, path, tokens, self.hub),
                path=path,
                number=number,
                subjects=self.world.subjects,
                concurrency=self.options.connections,
                warmup=warmup,
                duration=duration,
                watched=self.world.watched,
            )
        )
        self.best_rate[path] = max(self.best_rate.get(path, 0.0), result.throughput)
        return from_python_round(result, inline_tokens=tokens.inline)


def from_python_round(result: RoundResult, *, inline_tokens: int) -> PathRound:
    errors = dict(result.errors)
    if inline_tokens:
        errors["tokens minted inline"] = inline_tokens
    return PathRound(
        path=result.path,
        round=result.round,
        throughput=round(result.throughput, 1),
        answered=result.requests,
        seconds=result.seconds,
        latency_ms=result.latency_ms,
        errors=errors,
        cpu_ms_per_request=result.cpu_ms_per_request,
    )


Runner = WrkRunner | PythonRunner


# -- rounds ------------------------------------------------------------------------


def calibrate(runner: Runner, paths: tuple[str, ...]) -> None:
    """One short discarded round per path: JWKS and schema caches, connection pools,
    and a first measure of each path's rate to size the pre-built requests."""
    for path in paths:
        runner.round(path, 0, warmup=CALIBRATION_SECONDS[0], duration=CALIBRATION_SECONDS[1])


def measured(runner: Runner, options: Options) -> list[PathRound]:
    results = []
    for number in range(1, options.rounds + 1):
        for path in options.paths:
            result = runner.round(path, number, warmup=options.warmup, duration=options.duration)
            print_round(result)
            results.append(result)
    return results


def paced(runner: Runner, options: Options, rate: float) -> list[PathRound]:
    """Direct and hub once more, each paced at ``rate`` requests/s (half the hub's
    maximum, or ``--paced-rate``)."""
    results = []
    for path in ("direct", "hub"):
        result = runner.round(path, 50, warmup=options.warmup, duration=options.duration, rate=rate)
        print_round(result)
        results.append(result)
    return results


# -- report ------------------------------------------------------------------------


def median_of(results: list[PathRound], path: str) -> dict[str, Any]:
    rounds = [r for r in results if r.path == path]
    latency = {
        key: round(statistics.median(r.latency_ms[key] for r in rounds), 2)
        for key in rounds[0].latency_ms
        if all(key in r.latency_ms for r in rounds)
    }
    cpu = {
        name: round(
            statistics.median(v for r in rounds if (v := r.cpu_ms_per_request[name]) is not None), 3
        )
        for name in rounds[0].cpu_ms_per_request
        if all(r.cpu_ms_per_request.get(name) is not None for r in rounds)
    }
    errors = sum(sum(r.errors.values()) for r in rounds)
    return {
        "throughput": round(statistics.median(r.throughput for r in rounds), 1),
        "latency_ms": latency,
        "cpu_ms_per_request": cpu,
        "errors": errors,
        "rounds": len(rounds),
    }


CPU_NAMES = ("hub", "adapter", "nginx", "postgres", "wrk", "loadgen")


def print_round(result: PathRound) -> None:
    latency = result.latency_ms
    cpu = " ".join(f"{k}={v}" for k, v in result.cpu_ms_per_request.items() if v is not None)
    paced = f" (paced at {result.rate:.0f}/s)" if result.rate else ""
    audited = f"  audited {result.audited}" if result.audited is not None else ""
    print(
        f"  round {result.round} {result.path:6} {result.throughput:8.1f} req/s{paced}  "
        f"p50 {latency.get('p50', 0):6.2f}  p90 {latency.get('p90', 0):6.2f}  "
        f"p99 {latency.get('p99', 0):6.2f} ms  errors {result.errors or 0}{audited}  "
        f"cpu ms/req: {cpu}  load {result.load_average}",
        flush=True,
    )


def print_table(summary: dict[str, dict[str, Any]]) -> None:
    rows = summary.values()
    names = [n for n in CPU_NAMES if any(n in row["cpu_ms_per_request"] for row in rows)]
    print(
        f"\n{'path':8}{'req/s':>10}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"   CPU ms/request ({', '.join(names)})"
    )
    for path, row in summary.items():
        latency, cpu = row["latency_ms"], row["cpu_ms_per_request"]
        cpu_text = ", ".join(str(cpu.get(name, "-")) for name in names)
        print(
            f"{path:8}{row['throughput']:>10.1f}{latency.get('p50', 0):>9.2f}"
            f"{latency.get('p90', 0):>9.2f}{latency.get('p99', 0):>9.2f}{row['errors']:>8}"
            f"   {cpu_text}"
        )


def ratios(summary: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Throughput of each path over the direct path's (medians)."""
    if "direct" not in summary or not summary["direct"]["throughput"]:
        return {}
    direct = summary["direct"]["throughput"]
    return {
        f"{path}/direct": round(row["throughput"] / direct, 3)
        for path, row in summary.items()
        if path != "direct"
    }


def added_latency(paced: list[PathRound]) -> dict[str, Any]:
    """What the hub adds at half its maximum rate: the difference of the percentiles
    of two paced runs (direct, hub) at the same rate, not a percentile of differences."""
    direct, hub = (next(r for r in paced if r.path == path) for path in ("direct", "hub"))
    return {
        "rate": round(hub.rate or 0.0, 1),
        "achieved": {"direct": direct.throughput, "hub": hub.throughput},
        "direct_ms": direct.latency_ms,
        "hub_ms": hub.latency_ms,
        "added_ms": {
            key: round(hub.latency_ms[key] - direct.latency_ms[key], 2)
            for key in ("p50", "p90", "p99")
            if key in hub.latency_ms and key in direct.latency_ms
        },
        "errors": {"direct": direct.errors, "hub": hub.errors},
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


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPOSITORY, capture_output=True, text=True, check=False
    ).stdout.strip()


def commit() -> str:
    """The commit the servers run: the exported one, or HEAD (+ "-dirty" when the
    working tree's hub or adapters differ from it)."""
    exported = os.environ.get(_SOURCE_COMMIT)
    if exported:
        return exported
    return git("rev-parse", "--short", "HEAD") + (
        "-dirty" if git("status", "--porcelain", "--", "hub", "adapters") else ""
    )


_SOURCE_COMMIT = "BENCH_SOURCE_COMMIT"
_PACKAGES = {"hub": "hub", "adapters": "adapters", "schemas": "schemas", "config": "config"}


def check_source() -> None:
    """Refuse to measure the working tree when an exported commit was asked for."""
    import onceonly.adapters
    import onceonly.hub

    sha = os.environ.get(_SOURCE_COMMIT)
    if sha is None:
        return
    for package in (onceonly.hub, onceonly.adapters):
        if not Path(str(package.__file__)).is_relative_to(RESULTS / f"source-{sha}"):
            raise SystemExit(f"--source {sha}: {package.__name__} is {package.__file__}")


def run_from_commit(revision: str) -> None:
    """Export ``revision``'s packages to ``bench/results/source-<sha>/onceonly/`` and
    run this bench again with that directory first on PYTHONPATH (inherited by every
    server), so that others' uncommitted changes in the working tree are not measured."""
    sha = git("rev-parse", "--short", revision)
    if not sha:
        raise SystemExit(f"--source: no commit {revision!r}")
    target = RESULTS / f"source-{sha}"
    if not (target / "onceonly" / "hub").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        for package, folder in _PACKAGES.items():
            archive = subprocess.run(
                [
                    "git",
                    "archive",
                    "--format=tar",
                    f"--prefix=onceonly/{package}/",
                    f"{sha}:{folder}",
                ],
                cwd=REPOSITORY,
                capture_output=True,
                check=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), env.get("PYTHONPATH")]))
    env[_SOURCE_COMMIT] = sha
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


# -- main --------------------------------------------------------------------------


def profile_round(runner: Runner, stamp: str) -> dict[str, Any]:
    """One extra hub round with py-spy on the hub and the adapter (not in the medians)."""
    seconds = runner.options.warmup + runner.options.duration
    outputs = {name: RESULTS / f"exchange-{stamp}-{name}.txt" for name in ("hub", "adapter")}
    with ExitStack() as stack:
        for name, pid in runner.world.servers.items():
            stack.enter_context(recording(pid, output=outputs[name], seconds=seconds))
        result = runner.round(
            "hub", 99, warmup=runner.options.warmup, duration=runner.options.duration
        )
    print_round(result)
    report: dict[str, Any] = {"round_under_profiler": asdict(result)}
    for name, output in outputs.items():
        summary = summarize(output)
        print_profile(name, summary, output)
        report[name] = {"file": str(output.relative_to(REPOSITORY)), **asdict(summary)}
    return report


def make_runner(options: Options, world_: World, workdir: Path) -> Runner:
    hub = HubCredentials(world_, bearer=options.bearer)
    if options.generator == "python":
        return PythonRunner(world_, options, hub)
    return WrkRunner(world_, options, workdir, hub)


def idle_cpu(world_: World, seconds: float = 2.0) -> dict[str, float | None]:
    """CPU ms per second each process spends with no requests (background workers,
    pollers): spread over few requests it inflates CPU per request."""
    before = sample_cpu(world_.watched)
    time.sleep(seconds)
    after = sample_cpu(world_.watched)
    return {
        name: None
        if (start := before[name]) is None or end is None
        else round((end - start) * 1000 / seconds, 1)
        for name, end in after.items()
    }


def quiet_idle_cpu(world_: World, *, below: float = 50.0, limit: float = 90.0) -> dict[str, Any]:
    """Idle CPU once the hub's workers have all started: ``/healthz`` answers as soon
    as one uvicorn worker does, while the others may still be importing."""
    deadline = time.monotonic() + limit
    idle = idle_cpu(world_)
    while (idle.get("hub") or 0.0) > below and time.monotonic() < deadline:
        idle = idle_cpu(world_)
    return idle


def bench(options: Options, world_: World, stamp: str, workdir: Path) -> dict[str, Any]:
    idle = quiet_idle_cpu(world_)
    print(f"  idle CPU ms/s: {idle}", flush=True)
    runner = make_runner(options, world_, workdir)
    calibrate(runner, options.paths)
    results = measured(runner, options)
    summary = {path: median_of(results, path) for path in options.paths}
    print_table(summary)
    report: dict[str, Any] = {
        "hub_workers": world_.hub_workers,
        "idle_cpu_ms_per_second": idle,
        "summary": summary,
        "ratios": ratios(summary),
        "rounds": [asdict(r) for r in results],
    }
    for name, ratio in report["ratios"].items():
        print(f"{name} throughput: {ratio:.2f}x")
    paced_possible = {"direct", "hub"} <= set(options.paths) and options.generator == "wrk"
    if options.half_rate and paced_possible:
        asked = options.paced_rate is not None
        rate = options.paced_rate if asked else summary["hub"]["throughput"] / 2
        which = "the rate asked for" if asked else "half the hub's maximum rate"
        print(f"\npaced at {which} ({rate:.0f}/s):")
        report["half_rate"] = added_latency(paced(runner, options, rate))
        added = report["half_rate"]["added_ms"]
        print(f"latency the hub adds at {which}: {added} ms")
    report["audit_problems"] = runner.audit_problems
    if options.profile:
        if py_spy() is None:
            print("\n--profile: py-spy is not installed (pip install py-spy); no profile taken")
        else:
            report["profile"] = profile_round(runner, stamp)
    return report


def print_scaling(reports: list[dict[str, Any]]) -> None:
    print("\nhub workers scaling (hub path):")
    print(f"{'workers':>8}{'req/s':>10}{'p99 ms':>9}{'errors':>8}{'hub CPU ms/req':>16}")
    for report in reports:
        row = report["summary"]["hub"]
        print(
            f"{report['hub_workers']:>8}{row['throughput']:>10.1f}"
            f"{row['latency_ms'].get('p99', 0):>9.2f}{row['errors']:>8}"
            f"{row['cpu_ms_per_request'].get('hub', 0):>16}"
        )


def _list(kind: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    return lambda text: tuple(kind(part) for part in text.split(",") if part)


def _path(name: str) -> str:
    if name not in PATHS:
        raise argparse.ArgumentTypeError(f"unknown path {name!r} (one of {', '.join(PATHS)})")
    return name


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--connections", "--concurrency", type=int, default=16, help="concurrent connections"
    )
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
    parser.add_argument("--generator", choices=["wrk", "python"], default="wrk")
    parser.add_argument(
        "--paths", type=_list(_path), default=PATHS, help="comma-separated: direct,nginx,hub"
    )
    parser.add_argument(
        "--hub-workers",
        type=_list(int),
        default=(1,),
        help="comma-separated `onceonly serve --workers` values, one world each (e.g. 1,2)",
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--no-half-rate",
        dest="half_rate",
        action="store_false",
        help="skip the runs paced at half the hub's maximum rate",
    )
    parser.add_argument(
        "--paced-rate",
        type=float,
        default=None,
        help="pace the paced runs at this many requests/s instead of half the hub's maximum"
        " (to compare two commits at one rate on a noisy machine)",
    )
    parser.add_argument(
        "--source",
        default="worktree",
        help="what code the servers run: the working tree (the editable install), or a"
        " commit (e.g. HEAD) exported with git archive and put first on PYTHONPATH",
    )
    parser.add_argument(
        "--bearer",
        action="store_true",
        help="unbound Bearer tokens on a hub with require_dpop=false (the cost of DPoP)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the hub on one CPU, the adapter, nginx and the load generator on another"
        " (each side as on its own host; needs 2 CPUs)",
    )
    options = Options(**vars(parser.parse_args(argv)))
    if options.pin and len(os.sched_getaffinity(0)) < 2:
        parser.error("--pin needs 2 CPUs")
    if options.paced_rate is not None:
        if not (math.isfinite(options.paced_rate) and options.paced_rate > 0):
            parser.error("--paced-rate must be a number of requests/s above 0")
        if not options.half_rate or options.generator != "wrk":
            parser.error(
                "--paced-rate paces wrk's paced runs: not with --no-half-rate, nor"
                " with --generator python"
            )
    return options


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    # SIGTERM unwinds like Ctrl-C, so that the servers and the database are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if options.source != "worktree" and _SOURCE_COMMIT not in os.environ:
        run_from_commit(options.source)
    check_source()
    if options.bearer:  # inherited by the hub process (hub_environment)
        os.environ["ONCEONLY_REQUIRE_DPOP"] = "false"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    print(f"exchange bench at {commit()}: {options}", flush=True)
    load_before = load_average()
    print(f"load average before: {load_before}", flush=True)
    reports = []
    for workers in options.hub_workers:
        print(f"\nhub with --workers {workers}, {options.database}:", flush=True)
        with (
            tempfile.TemporaryDirectory(prefix="onceonly-bench-") as root,
            world(options, Path(root), hub_workers=workers) as world_,
        ):
            reports.append(bench(options, world_, stamp, Path(root)))
    if len(reports) > 1 and "hub" in options.paths:
        print_scaling(reports)
    meta = {
        "date": stamp,
        "commit": commit(),
        "python": sys.version.split()[0],
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs",
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "options": asdict(options),
    }
    print(f"load average after: {meta['load_average_after']}")
    output = RESULTS / f"exchange-{stamp}.json"
    output.write_text(json.dumps({"meta": meta, "runs": reports}, indent=2))
    print(f"\nresults: {output.relative_to(REPOSITORY)}")
    failed = any(row["errors"] for report in reports for row in report["summary"].values()) or any(
        report["audit_problems"] for report in reports
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
