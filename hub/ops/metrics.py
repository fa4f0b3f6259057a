"""What ``/metrics`` reads when it is scraped: facts of the database (requests pending
and overdue, the latest checkpoint, the log's size) and of this process's audit writer
(its queue, lag, health and failures). The series counted as things happen are in
onceonly.hub.metrics.

Three small reads per scrape, on the primary (the same answer from every replica);
a fault in them leaves those series out of the answer, never the answer itself.
"""

import logging
from collections.abc import Iterator
from datetime import datetime

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from onceonly.hub.access import repository as access_repository
from onceonly.hub.audit import repository as audit_repository
from onceonly.hub.audit.service import AuditLog
from onceonly.hub.auth.jti_register import JtiRegister
from onceonly.hub.kit.clock import aware
from onceonly.hub.runtime import Hub

log = logging.getLogger("onceonly.metrics")


class _Families:
    """A collector of families made for one scrape (prometheus_client's generate_latest
    takes anything with ``collect``)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


async def exposition(hub: Hub) -> bytes:
    """The Prometheus text of this process: its counters and histograms, then what is
    read now."""
    families = _writer_families(hub.audit_log) + _register_families(hub.jti_register)
    try:
        families += await _database_families(hub)
    except Exception:
        log.warning("metrics: could not read the database", exc_info=True)
    return bytes(generate_latest(REGISTRY)) + bytes(generate_latest(_Families(families)))


def _writer_families(audit_log: AuditLog) -> list[Metric]:
    writer = audit_log.writer
    return [
        _gauge("onceonly_audit_queue_entries", "Entries waiting for the group commit",
               writer.waiting),
        _gauge("onceonly_audit_commit_lag_seconds",
               "Age of the oldest entry waiting for the group commit (0 when none)", writer.lag),
        _gauge("onceonly_audit_writer_up", "1 if the audit writer runs and can commit, else 0",
               1 if audit_log.healthy else 0),
        CounterMetricFamily("onceonly_audit_commit_failures",
                            "Group commits of audit entries that failed",
                            value=writer.failed_batches),
        CounterMetricFamily("onceonly_audit_entries_refused",
                            "Audit entries the database refused for what they held (each"
                            " failed its own request alone)",
                            value=writer.refused_items),
    ]  # fmt: skip


def _register_families(register: JtiRegister) -> list[Metric]:
    """Unflushed spend batches written on the event loop, and those handed to the
    driver's thread instead (SQLite's lock taken, the WAL to start afresh, PostgreSQL;
    decision 0048)."""
    ways = CounterMetricFamily(
        "onceonly_jti_loop_writes",
        "Unflushed single-use spend batches written on the event loop (done) or handed"
        " to the driver's thread (passed)",
        labels=["result"],
    )
    ways.add_metric(["done"], register.here.done)
    ways.add_metric(["passed"], register.here.passed)
    return [ways]


async def _database_families(hub: Hub) -> list[Metric]:
    now = hub.clock.now()
    async with hub.sessions() as session:
        pending = await access_repository.pending_by_owner(session, now=now)
        checkpoint = await audit_repository.latest_checkpoint(session)
        size = await audit_repository.next_index(session)
    families = _request_families(pending, departments=hub.metrics.guard.departments)
    families.append(_gauge("onceonly_audit_tree_size", "Entries in the audit log", size))
    if checkpoint is not None:
        families.append(_checkpoint_age(now, aware(checkpoint.time)))
    return families


def _request_families(
    pending: dict[str, tuple[int, int]], *, departments: frozenset[str]
) -> list[Metric]:
    """Every known department (0 when none waits), and any other owner the database
    names (a department registered since the label guard last read the registry)."""
    waiting = GaugeMetricFamily(
        "onceonly_access_requests_pending", "Access requests waiting for the owner's decision",
        labels=["owner"],
    )  # fmt: skip
    overdue = GaugeMetricFamily(
        "onceonly_access_requests_overdue", "Pending access requests past their answer_due",
        labels=["owner"],
    )  # fmt: skip
    for owner in sorted(departments | set(pending)):
        count, late = pending.get(owner, (0, 0))
        waiting.add_metric([owner], count)
        overdue.add_metric([owner], late)
    return [waiting, overdue]


def _checkpoint_age(now: datetime, signed: datetime) -> Metric:
    age = max(0.0, (now - signed).total_seconds())
    return _gauge("onceonly_checkpoint_age_seconds", "Seconds since the latest signed checkpoint",
                  age)  # fmt: skip


def _gauge(name: str, documentation: str, value: float) -> Metric:
    return GaugeMetricFamily(name, documentation, value=value)
