"""The hub's Prometheus series (docs/operations.md, "Metrics"), and the one place that
turns a committed audit entry into their updates (:class:`EntryMetrics`).

Labels carry only registered values, so the number of series stays bounded whatever
callers send (decision 0027): item ids in the registry, department ids that exist,
purpose codes of the purpose list, reason slugs of the problem vocabulary, fixed
outcome words. Anything else (an item id a client typed that is not registered, a
refusal before the client is known) is :data:`UNKNOWN`, ``-``. Never a subject, a token
or free text. Nor what the token endpoint keeps from its callers (decision 0063): its
refusals (and introspection's and revocation's) name no consumer, and every reason why a
client was not authenticated is counted as one, :data:`CLIENT_NOT_AUTHENTICATED`.

:class:`LabelGuard` knows the registered values from one small read, made at start-up
and again, in the background, when this process commits a change to the registry or
meets a value it does not know (at most every ``min_interval`` seconds): the request
that meets it is never made to wait for the database, and a registration on another
replica is known here after the first query that names it.

What is read from the database or a worker when ``/metrics`` is scraped (requests
pending, the audit writer's queue, the latest checkpoint) is in onceonly.hub.ops.metrics.
"""

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from prometheus_client import Counter, Histogram

from onceonly.hub.kit.problems import HubError

log = logging.getLogger("onceonly.metrics")

UNKNOWN = "-"
OUTCOMES = frozenset({"ok", "refused", "failed"})
RECORD_QUERY = "record.query"
# Reasons of audited failures that are not problem types: event deliveries (events.delivery).
OTHER_REASONS = frozenset({"delivery-failed", "dead-letter"})
_ACTION = re.compile(r"^[a-z][a-z0-9.-]{0,63}$")  # the code's own action names
# The OAuth endpoints' actions. Many of their refusals are decided before the client
# has authenticated (the client is only named), so they are counted under no consumer:
# a department there would tell a reader of /metrics which client ids exist.
OAUTH_ACTIONS = frozenset({"token.issue", "token.introspect", "token.revoke"})
# The problem type (auth.exceptions.ClientNotAuthenticated) whose subclasses are the
# audited reasons why a client was not authenticated: unknown, disabled, a signature
# or certificate that does not match. The answer is one for all (401 invalid_client),
# and so is the count: every one of them is counted under this reason (decision 0063).
CLIENT_NOT_AUTHENTICATED = "client-not-authenticated"

# When the request being served arrived (time.perf_counter), set by the middleware:
# the time the hub adds to a record query is measured from there to its audit entry.
REQUEST_STARTED: ContextVar[float | None] = ContextVar("onceonly_request_started", default=None)

M = TypeVar("M", Counter, Histogram)


class Series(Generic[M]):
    """A labelled metric's children, each found by prometheus_client's ``labels`` once.

    ``labels`` checks the label names, turns every value into text and takes the
    metric's lock on each call (1-2.5 µs); the hot path counts five series per
    exchange. The children are the metric's own: what ``/metrics`` shows is unchanged.
    Values are positional, in the metric's label order. The series stay as bounded as
    the values given (decision 0027)."""

    def __init__(self, metric: M) -> None:
        self._metric: M = metric
        self._children: dict[tuple[str, ...], M] = {}

    def of(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:  # two threads may both ask labels(): it gives both the same child
            child = self._children[values] = self._metric.labels(*values)
        return child


EXCHANGES = Counter(
    "onceonly_exchanges_total",
    "Record queries, counted when their audit entry is committed",
    ["item", "consumer", "owner", "purpose", "outcome"],
)
REFUSALS = Counter(
    "onceonly_refusals_total",
    "Audited requests whose outcome is not ok (refused or failed), by reason",
    ["action", "reason", "item", "consumer"],
)
OWNER_RESPONSE = Histogram(
    "onceonly_owner_response_seconds",
    "Time the owner's adapter took to answer (or fail) a record query",
    ["owner", "item"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
HUB_ADDED = Histogram(
    "onceonly_hub_added_seconds",
    "Time of a record query in the hub, minus the owner's time (queries that reached it)",
    ["item"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
AUDIT_UNNAMED_REFUSALS_UNLOGGED = Counter(
    "onceonly_audit_unnamed_refusals_unlogged_total",
    "Refusals that named nobody (no client, person or department) past their source's"
    " budget (audit_unnamed_refusals_per_minute): counted here, not written to the log",
    ["action"],
)
COMMIT_WAIT = Histogram(
    "onceonly_commit_wait_seconds",
    "Time a request waited for its group commit, submitted to answered, by writer",
    ["writer"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
_HOUR, _DAY = 3600.0, 86400.0
ACCESS_DECISION = Histogram(
    "onceonly_access_decision_seconds",
    "Time from an access request to its owner's decision",
    ["owner", "decision"],
    buckets=tuple(_HOUR * hours for hours in (1, 4, 8, 24, 48, 72, 120, 168, 336, 720)),
)
ACCESS_DEADLINE_RATIO = Histogram(
    "onceonly_access_decision_deadline_ratio",
    "(decided - requested) / (answer due - requested): at most 1 is on time",
    ["owner", "decision"],
    buckets=(0.25, 0.5, 0.75, 1, 1.5, 2, 4),
)
EVENT_DELIVERIES = Counter(
    "onceonly_event_deliveries_total",
    "Attempts to deliver a change event, by outcome (delivered, failed)",
    ["item", "subscriber", "outcome"],
)
EVENT_RETRIES = Counter(
    "onceonly_event_retries_total",
    "Failed delivery attempts that will be tried again",
    ["item", "subscriber"],
)
EVENT_DEAD_LETTERS = Counter(
    "onceonly_event_dead_letters_total",
    "Deliveries that became dead letters (their last attempt failed)",
    ["item", "subscriber"],
)
AUDIT_ENTRIES = Counter("onceonly_audit_entries_total", "Audit entries this process committed", [])
AUDIT_SUBJECT_SEARCHES_THROTTLED = Counter(
    "onceonly_audit_subject_searches_throttled_total",
    "Searches of the audit log by subject refused 429 for the person's hourly budget"
    " (audit_subject_searches_per_hour)",
)
TOKEN_REQUESTS_THROTTLED = Counter(
    "onceonly_oauth_token_throttled_total",
    "Requests to the token, introspection and revocation endpoints refused 429 slow_down,"
    " by the budget they were over (client: tokens issued to the client named, token"
    " requests only; address: refused requests from the source address, at the three)",
    ["budget"],
)
_EXCHANGES, _REFUSALS = Series(EXCHANGES), Series(REFUSALS)
_OWNER_RESPONSE, _HUB_ADDED = Series(OWNER_RESPONSE), Series(HUB_ADDED)


@dataclass(frozen=True)
class Vocabulary:
    """The registered values a label may carry."""

    owners: Mapping[str, str] = field(default_factory=dict)  # item id -> owner department
    departments: frozenset[str] = frozenset()
    purposes: frozenset[str] = frozenset()


def problem_slugs(root: type[HubError] = HubError) -> frozenset[str]:
    """The problem vocabulary: the slug of ``root`` (every HubError class defined so
    far, by default) and of its subclasses."""
    found: set[str] = set()
    classes: list[type[HubError]] = [root]
    while classes:
        cls = classes.pop()
        found.add(cls.slug)
        classes.extend(cls.__subclasses__())
    return frozenset(found)


def hidden_client_reasons() -> frozenset[str]:
    """The reasons counted as :data:`CLIENT_NOT_AUTHENTICATED`: its class's subclasses'."""
    classes: list[type[HubError]] = [HubError]
    while classes:
        cls = classes.pop()
        if cls.slug == CLIENT_NOT_AUTHENTICATED:
            return problem_slugs(cls)
        classes.extend(cls.__subclasses__())
    return frozenset()


STOP_SECONDS = 5.0
"""How long stopping the label guard waits for a refresh under way."""


class LabelGuard:
    """Turns a value into itself if it is registered, else ``-`` (see the module's
    docstring). A worker: ``start()`` reads the vocabulary, ``stop()`` ends a refresh."""

    def __init__(
        self, load: Callable[[], Awaitable[Vocabulary]], *, min_interval: float = 5.0
    ) -> None:
        self._load, self._min_interval = load, min_interval
        self._known = Vocabulary()
        self._reasons = problem_slugs() | OTHER_REASONS
        self._hidden = hidden_client_reasons()
        self._loaded_at = float("-inf")
        self._wanted = False
        self._stopped = False
        self._task: asyncio.Task[None] | None = None

    @property
    def departments(self) -> frozenset[str]:
        return self._known.departments

    async def start(self) -> None:
        self._stopped = False
        try:
            await self.refresh()
        except Exception:  # labels are "-" until a refresh succeeds; the hub still serves
            log.warning("could not read the registry for metric labels", exc_info=True)

    async def stop(self) -> None:
        """End the refreshes: one under way may finish its reads first, for at most
        ``STOP_SECONDS`` (cancelled in the middle of a read, its connection would be
        invalidated and, on SQLite, left open for the garbage collector to close)."""
        self._stopped, self._wanted = True, False
        task, self._task = self._task, None
        if task is None:
            return
        await asyncio.wait((task,), timeout=STOP_SECONDS)
        if not task.done():
            task.cancel()
            await asyncio.wait((task,))

    async def refresh(self) -> None:
        self._loaded_at = time.monotonic()
        self._known = await self._load()
        self._reasons = problem_slugs() | OTHER_REASONS
        self._hidden = hidden_client_reasons()

    def item(self, value: object) -> str:
        return self._checked(value, self._known.owners)

    def department(self, value: object) -> str:
        return self._checked(value, self._known.departments)

    def purpose(self, value: object) -> str:
        return self._checked(value, self._known.purposes)

    def reason(self, value: object) -> str:
        """A registered reason; every reason why a client was not authenticated is
        :data:`CLIENT_NOT_AUTHENTICATED` (the audit entry keeps which)."""
        if isinstance(value, str) and value in self._hidden:
            return CLIENT_NOT_AUTHENTICATED
        return self._checked(value, self._reasons)

    def owner_of(self, item: str) -> str:
        """The registered owner of a registered ``item``; ``-`` for ``-``."""
        return self._known.owners.get(item, UNKNOWN)

    def registry_changed(self) -> None:
        """This process committed a change to the registry: read it again now."""
        self._wanted = True
        self._start_refresh()

    def _checked(self, value: object, known: Mapping[str, Any] | frozenset[str]) -> str:
        if value is None:
            return UNKNOWN
        if isinstance(value, str) and value in known:
            return value
        if time.monotonic() - self._loaded_at >= self._min_interval:  # maybe new elsewhere
            self._wanted = True
            self._start_refresh()
        return UNKNOWN

    def _start_refresh(self) -> None:
        if self._stopped:
            return  # nothing would stop it
        if self._task is not None and not self._task.done():
            return  # the running refresh reads again while _wanted is set
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._task = loop.create_task(self._refresh_while_wanted(), name="metric-labels")

    async def _refresh_while_wanted(self) -> None:
        while self._wanted:
            self._wanted = False
            try:
                await self.refresh()
            except Exception:
                log.warning("could not read the registry for metric labels", exc_info=True)
                return


class EntryMetrics:
    """Every committed audit entry passes :meth:`committed` once: exchanges, refusals,
    the owner's time and the hub's, and the entry count."""

    def __init__(self, guard: LabelGuard) -> None:
        self.guard = guard

    def committed(self, entry: Mapping[str, Any]) -> None:
        """Count ``entry``; a fault here is logged, never raised into a request."""
        try:
            self._count(entry)
        except Exception:
            log.exception("could not count an audit entry in the metrics")

    def _count(self, entry: Mapping[str, Any]) -> None:
        AUDIT_ENTRIES.inc()
        action = str(entry.get("action", ""))
        if action.startswith("registry."):
            self.guard.registry_changed()
        outcome = entry.get("outcome")
        outcome = outcome if outcome in OUTCOMES else UNKNOWN
        item = self.guard.item(entry.get("item"))
        consumer = self.guard.department(entry.get("department"))
        if action in OAUTH_ACTIONS and outcome != "ok":
            consumer = UNKNOWN  # the client may only have been named (OAUTH_ACTIONS)
        if action == RECORD_QUERY:
            self._exchange(entry, item=item, consumer=consumer, outcome=outcome)
        if outcome != "ok":
            _REFUSALS.of(
                action if _ACTION.match(action) else UNKNOWN,  # action, reason, item, consumer
                self.guard.reason(entry.get("reason")),
                item,
                consumer,
            ).inc()

    def _exchange(
        self, entry: Mapping[str, Any], *, item: str, consumer: str, outcome: str
    ) -> None:
        noted_owner = entry.get("owner")
        owner = (
            self.guard.owner_of(item) if noted_owner is None else self.guard.department(noted_owner)
        )
        purpose = self.guard.purpose(entry.get("purpose"))
        _EXCHANGES.of(item, consumer, owner, purpose, outcome).inc()
        owner_ms = entry.get("owner_ms")
        if not isinstance(owner_ms, int):
            return  # the query did not reach the owner
        _OWNER_RESPONSE.of(owner, item).observe(owner_ms / 1000)
        started = REQUEST_STARTED.get()
        if started is not None:
            in_hub = time.perf_counter() - started
            _HUB_ADDED.of(item).observe(max(0.0, in_hub - owner_ms / 1000))


def access_decided(
    *, owner: str, decision: str, requested: datetime, due: datetime, decided: datetime
) -> None:
    """An owner's steward approved or refused an access request (after it committed)."""
    taken = (decided - requested).total_seconds()
    allowed = (due - requested).total_seconds()
    ACCESS_DECISION.labels(owner=owner, decision=decision).observe(max(0.0, taken))
    if allowed > 0:
        ratio = max(0.0, taken) / allowed
        ACCESS_DEADLINE_RATIO.labels(owner=owner, decision=decision).observe(ratio)


def delivery_attempted(*, item: str, subscriber: str, delivered: bool, reason: str | None) -> None:
    """One attempt to deliver an event, recorded: delivered, or failed (then retried, or
    a dead letter). Item and subscriber come from a delivery's row: registered."""
    outcome = "delivered" if delivered else "failed"
    EVENT_DELIVERIES.labels(item=item, subscriber=subscriber, outcome=outcome).inc()
    if reason == "delivery-failed":
        EVENT_RETRIES.labels(item=item, subscriber=subscriber).inc()
    elif reason == "dead-letter":
        EVENT_DEAD_LETTERS.labels(item=item, subscriber=subscriber).inc()


def commit_wait(writer: str) -> Callable[[float], None]:
    """What a group commit gives each item's wait (``GroupCommit(observe=...)``)."""
    return COMMIT_WAIT.labels(writer).observe
