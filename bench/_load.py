"""A closed-loop load generator: C workers on one ``httpx.AsyncClient`` pool, each
sending its next request as soon as the previous one is answered.

A round runs ``warmup + duration`` seconds; only requests that *finish* inside the
measured window (after the warm-up) count towards throughput and latency. CPU time
of the load generator and of the watched server processes is sampled at the window's
edges, so that a round also reports CPU milliseconds per request for each process.
"""

import asyncio
import os
import random
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from _processes import Watched, sample_cpu

# One request: given the client and a subject, send it and return the HTTP status.
Send = Callable[[httpx.AsyncClient, str], Awaitable[int]]


@dataclass
class Window:
    """The measured part of a round and what was seen inside it."""

    start: float
    end: float
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    cpu_start: dict[str, float | None] = field(default_factory=dict)
    cpu_end: dict[str, float | None] = field(default_factory=dict)

    def observe(self, finished: float, latency: float, outcome: str | None) -> None:
        if not self.start <= finished <= self.end:
            return
        if outcome is None:
            self.latencies.append(latency)
        else:
            self.errors[outcome] += 1


@dataclass(frozen=True)
class RoundResult:
    path: str
    round: int
    requests: int
    seconds: float
    errors: dict[str, int]
    latency_ms: dict[str, float]
    cpu_ms_per_request: dict[str, float | None]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds


def _cpu_snapshot(watched: Watched) -> dict[str, float | None]:
    times = os.times()
    return {"loadgen": times.user + times.system} | sample_cpu(watched)


async def _snapshot_at(moment: float, pids: Watched, into: dict[str, float | None]) -> None:
    await asyncio.sleep(max(0.0, moment - time.perf_counter()))
    into.update(_cpu_snapshot(pids))


async def _worker(
    client: httpx.AsyncClient, send: Send, subjects: list[str], window: Window, seed: int
) -> None:
    chooser = random.Random(seed)
    while time.perf_counter() < window.end:
        started = time.perf_counter()
        try:
            status = await send(client, chooser.choice(subjects))
            outcome = None if status == 200 else f"HTTP {status}"
        except httpx.HTTPError as error:
            outcome = type(error).__name__
        finished = time.perf_counter()
        window.observe(finished, finished - started, outcome)


async def run_round(
    send: Send,
    *,
    path: str,
    number: int,
    subjects: list[str],
    concurrency: int,
    warmup: float,
    duration: float,
    watched: Watched,
) -> RoundResult:
    """One closed-loop round of ``send`` against random ``subjects``."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    now = time.perf_counter()
    window = Window(start=now + warmup, end=now + warmup + duration)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        await asyncio.gather(
            _snapshot_at(window.start, watched, window.cpu_start),
            _snapshot_at(window.end, watched, window.cpu_end),
            *(
                _worker(client, send, subjects, window, seed=number * 1000 + worker)
                for worker in range(concurrency)
            ),
        )
    return _result(window, path=path, number=number, duration=duration)


def _result(window: Window, *, path: str, number: int, duration: float) -> RoundResult:
    requests = len(window.latencies)
    return RoundResult(
        path=path,
        round=number,
        requests=requests,
        seconds=duration,
        errors=dict(window.errors),
        latency_ms=latency_summary(window.latencies),
        cpu_ms_per_request={
            name: _per_request(window.cpu_start.get(name), end, requests)
            for name, end in window.cpu_end.items()
        },
    )


def _per_request(start: float | None, end: float | None, requests: int) -> float | None:
    if start is None or end is None or requests == 0:
        return None
    return round((end - start) * 1000 / requests, 3)


def latency_summary(latencies: list[float]) -> dict[str, float]:
    """p50, p90, p95, p99 and mean in milliseconds (nearest-rank percentiles)."""
    if not latencies:
        return {}
    ordered = sorted(latencies)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))] * 1000

    return {
        "p50": round(rank(50), 2),
        "p90": round(rank(90), 2),
        "p95": round(rank(95), 2),
        "p99": round(rank(99), 2),
        "mean": round(statistics.fmean(ordered) * 1000, 2),
    }
