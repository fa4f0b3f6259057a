"""What operators read from a provider adapter: ``/metrics`` and ``/readyz``
(docs/adapters.md, "Monitoring").

Each provider app has a Prometheus registry of its own, so that several adapters in
one process (the demo, tests) each report only what they served. Labels carry only
bounded values: an item this adapter is configured to serve (else ``-``), a fixed
outcome word, a problem type of the adapters' own vocabulary. Never a subject, a
token, a consumer's free text.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping

import anyio
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from ._sources import ProbedSource, RecordSource
from ._store import RecordStore

__all__ = ["ProviderMetrics", "SharedCheck", "readiness_problems"]

UNKNOWN = "-"
_SLUG = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
PROBE_SECONDS = 2.0  # a source that takes longer to answer a probe is not ready
READINESS_KEPT_SECONDS = 5.0  # how long one readiness check answers /readyz


class ProviderMetrics:
    """The series of one provider app."""

    def __init__(self, items: frozenset[str]) -> None:
        self._items = items
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "onceonly_adapter_requests_total",
            "Record queries this adapter answered, by item and outcome (ok, refused, failed)",
            ["item", "outcome"],
            registry=self.registry,
        )
        self._source = Histogram(
            "onceonly_adapter_source_seconds",
            "Time the record source took to answer (or fail)",
            ["item"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self._served: dict[tuple[str, str], Counter] = {}
        self._took: dict[str, Histogram] = {}
        self._token_refusals = Counter(
            "onceonly_adapter_token_refusals_total",
            "Requests refused because the hub's request token did not hold, by problem type",
            ["reason"],
            registry=self.registry,
        )

    def item(self, item: str) -> str:
        return item if item in self._items else UNKNOWN

    def served(self, item: str, outcome: str) -> None:
        key = (self.item(item), outcome)
        counter = self._served.get(key)
        if counter is None:  # labels() looks the series up anew on every call
            counter = self._served[key] = self._requests.labels(item=key[0], outcome=outcome)
        counter.inc()

    def source_took(self, item: str, seconds: float) -> None:
        label = self.item(item)
        histogram = self._took.get(label)
        if histogram is None:
            histogram = self._took[label] = self._source.labels(item=label)
        histogram.observe(seconds)

    def token_refused(self, problem_type: str | None) -> None:
        reason = problem_type if problem_type and _SLUG.match(problem_type) else UNKNOWN
        self._token_refusals.labels(reason=reason).inc()

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))


MIN_FREE_BYTES = 1 << 20
"""Less free space than this where the trail store lives, and the adapter is not ready:
each answer writes a trail entry, and SQLite needs room for its write-ahead log."""


async def readiness_problems(sources: Mapping[str, RecordSource], store: RecordStore) -> list[str]:
    """Why the adapter cannot serve now (empty: it can): each source that can be
    probed answers within ``PROBE_SECONDS``, the trail store takes a write, and its
    disk has ``MIN_FREE_BYTES`` free."""
    problems = [
        f"the source of {item} does not answer: {why}"
        for item, source in sorted(sources.items())
        if (why := await _probe(item, source)) is not None
    ]
    try:
        await anyio.to_thread.run_sync(store.check_writable)
    except Exception as error:  # SQLite's own errors; their text names no subject
        problems.append(f"the trail store cannot write: {type(error).__name__}")
    try:  # in a thread too: a hung network file system must not stall the event loop
        free = await anyio.to_thread.run_sync(store.free_bytes)
    except OSError as error:  # the directory gone, unreadable, a stale handle
        problems.append(f"the trail store's disk cannot be measured: {type(error).__name__}")
    else:  # taking the write lock writes nothing: a full disk passes it
        if free < MIN_FREE_BYTES:
            problems.append(
                f"the trail store's disk is full: {free // 1024} KiB free, fewer than"
                f" {MIN_FREE_BYTES // 1024} KiB"
            )
    return problems


async def _probe(item: str, source: RecordSource) -> str | None:
    if not isinstance(source, ProbedSource):
        return None  # a Python callable: nothing to ask before a real query
    started = time.monotonic()
    try:
        with anyio.fail_after(PROBE_SECONDS):
            await source.probe(item)
    except TimeoutError:
        return f"no answer within {time.monotonic() - started:.1f}s"
    except Exception as error:  # a department's own source may raise anything
        return type(error).__name__
    return None


class SharedCheck:
    """The result of ``check``, shared by every caller while it runs and kept for
    ``keep`` seconds after it ends: ``/readyz`` needs no token, so whoever reaches the
    adapter could otherwise make it probe every source (a legacy system's API, with the
    adapter's credentials) as often as they like. 300 calls sent 234 requests to a
    legacy system before; now at most one check runs per ``keep`` seconds."""

    def __init__(
        self,
        check: Callable[[], Awaitable[list[str]]],
        *,
        keep: float = READINESS_KEPT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check, self._keep, self._clock = check, keep, clock
        self._kept: tuple[float, list[str]] | None = None  # (when it ended, result)
        self._running: asyncio.Future[list[str]] | None = None

    async def __call__(self) -> list[str]:
        if self._kept is not None and self._clock() - self._kept[0] < self._keep:
            return self._kept[1]
        if self._running is None:
            self._running = asyncio.ensure_future(self._run())
        # shielded: a caller that goes away does not cancel the check the others await
        return list(await asyncio.shield(self._running))

    async def _run(self) -> list[str]:
        try:
            result = await self._check()
            self._kept = (self._clock(), result)
            return result
        finally:
            self._running = None
