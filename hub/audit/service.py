"""Appending to the audit log, with group commit.

Every request that must be audited hands its entry to :class:`AuditLog`. One writer
task per process takes whatever entries are waiting (up to ``batch_size``), gives
them the next dense indexes and commits them in one transaction; each waiting
request then gets its receipt. The response that an entry audits is sent only
after that commit: no audit entry, no data.

Across processes the index is kept dense by the table's primary key: on
PostgreSQL the writers also take a transaction-scoped advisory lock, on SQLite the
database lock serializes them; a writer that loses a race retries its batch.

An entry that the store refuses for what it holds (:func:`store_refusal`: a value too
long for its column, say) is not retried: the group commit commits its batch again
in halves, so that only that entry's request fails (decision 0044).
"""

import asyncio
import csv
import io
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)

from onceonly.hub import db, metrics
from onceonly.hub.audit import inclusion as verdicts
from onceonly.hub.audit import leaves, merkle, notes, repository, tree
from onceonly.hub.audit.exceptions import (
    AuditLogDamaged,
    AuditUnavailable,
    EntryNotFound,
    SubjectSearchesThrottled,
)
from onceonly.hub.audit.models import AuditEntry
from onceonly.hub.audit.readers import AUDITOR, Reader
from onceonly.hub.audit.repository import EntryFilter
from onceonly.hub.audit.schemas import STORED_OTHERWISE, EntryOut, EntryPage, IndexedOut, ProofOut
from onceonly.hub.db import write_connection
from onceonly.hub.kit.after_commit import on_commit, on_commit_begun
from onceonly.hub.kit.clock import SYSTEM_CLOCK, Clock, as_utc, aware, rfc3339_ms
from onceonly.hub.kit.group_commit import GroupCommit
from onceonly.hub.kit.problems import DatabaseUnavailable, HubError
from onceonly.hub.kit.rate_limit import TokenBuckets
from onceonly.hub.kit.spreadsheet import neutralize_formula

log = logging.getLogger("onceonly.audit")

# Sources whose budget of refusals that name nobody a process keeps (decision 0094), and
# how often one past its budget is still written (the others are counted).
UNNAMED_REFUSAL_SOURCES = 10_000
UNNAMED_REFUSAL_REPORT_EVERY = 60.0

_RACE_RETRIES = 5


@dataclass(frozen=True)
class Receipt:
    """Where an entry stands in the log: its index and RFC 6962 leaf hash."""

    index: int
    leaf_hash: bytes

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "leaf_hash": leaves.b64(self.leaf_hash)}


class AuditLog:
    """The process's appender. ``start()`` in the lifespan, ``stop()`` drains it."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        batch_size: int = 256,
        probe_interval: float = 1.0,
        clock: Clock = SYSTEM_CLOCK,
        on_committed: Callable[[dict[str, Any]], None] = lambda entry: None,
        unnamed_refusals_per_minute: int = 0,
    ) -> None:
        self._engine = engine
        self.clock = clock  # the time of every entry written through a scope
        self.on_committed = on_committed  # called with each entry once committed (metrics)
        # refusals that name nobody, logged within a budget per source (decision 0094)
        self._unnamed: TokenBuckets[str] | None = (
            TokenBuckets(
                capacity=2 * unnamed_refusals_per_minute,
                per_second=unnamed_refusals_per_minute / 60,
                max_keys=UNNAMED_REFUSAL_SOURCES,
            )
            if unnamed_refusals_per_minute > 0
            else None
        )
        self._writer: GroupCommit[tuple[dict[str, Any], bytes], Receipt] = GroupCommit(
            self._write_with_retry,
            name="audit-writer",
            batch_size=batch_size,
            failure=lambda: AuditUnavailable("the audit entry could not be committed"),
            probe=self._can_append,
            probe_interval=probe_interval,
            refusal=store_refusal,
            observe=metrics.commit_wait("audit"),
        )

    @property
    def running(self) -> bool:
        return self._writer.running

    @property
    def healthy(self) -> bool:
        """Running, and its last commit (or probe since) succeeded: what /readyz reports."""
        return self._writer.healthy

    def logs_unnamed_refusal(self, source: str | None, *, action: str) -> bool:
        """Whether a refusal that names nobody, from ``source``, is written (decision
        0094): within the source's budget, or the first past it in a minute; the others
        are counted in ``onceonly_audit_unnamed_refusals_unlogged_total``."""
        budget = self._unnamed
        if budget is None:
            return True
        key, now = source or "unknown", self.clock.monotonic()
        if budget.wait(key, now=now) == 0.0:
            budget.take(key, now=now)
            return True
        if budget.report_due(key, now=now, every=UNNAMED_REFUSAL_REPORT_EVERY):
            return True
        metrics.AUDIT_UNNAMED_REFUSALS_UNLOGGED.labels(action).inc()
        return False

    @property
    def writer(self) -> GroupCommit[tuple[dict[str, Any], bytes], Receipt]:
        return self._writer  # its queue and lag, read by /metrics

    async def _can_append(self) -> None:
        """The write path answers (the append lock, the log's size); nothing is written."""
        async with write_connection(self._engine) as conn:
            await repository.lock_for_append(conn)
            await repository.next_index(conn)

    async def start(self) -> None:
        await self._writer.start()

    async def stop(self) -> None:
        await self._writer.stop()

    async def append(self, entry: dict[str, Any]) -> Receipt:
        """Commit ``entry`` and return its receipt; raise AuditUnavailable if it cannot."""
        receipt = await self._writer.submit((entry, leaves.leaf_bytes(entry)))
        self.on_committed(entry)
        return receipt

    async def _write_with_retry(self, batch: list[tuple[dict[str, Any], bytes]]) -> list[Receipt]:
        for attempt in range(_RACE_RETRIES):
            try:
                return await _append_in_one_call(self._engine, batch)
            except (IntegrityError, DBAPIError) as error:
                # Only a lost race is tried again. A refused entry would be refused again
                # (the writer halves the batch); a database that is away, locked past the
                # busy timeout or out of space would fail again, each time after the same
                # wait (5 s for a PostgreSQL server that does not answer, decision 0052):
                # the batch fails at once and the writer's probe finds when it is back.
                if attempt == _RACE_RETRIES - 1 or not lost_race(error):
                    raise
                log.warning(
                    "audit append lost a race for the next index (%s: %s); trying again",
                    type(error).__name__,
                    db.driver_code(error.orig),
                )
                await asyncio.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")

    async def append_within(self, session: AsyncSession, entry: dict[str, Any]) -> Receipt:
        """Append inside the session's own transaction: for requests that change state,
        so that the change and its audit entry commit together, or neither does."""
        conn = await session.connection()
        (receipt,) = await append_rows(conn, [(entry, leaves.leaf_bytes(entry))])
        on_commit(session, lambda: self.on_committed(entry))
        return receipt


# What the stores refuse in a row's own values, the same in any batch (decision 0044).
# PostgreSQL: SQLSTATE class 22 (data exception: a text too long for its column, a NUL
# or a byte sequence that is no UTF-8) and class 23 (integrity constraint), except
# 23505, unique_violation: on the log's primary key that is a race with another writer,
# retried. SQLite: DataError (SQLITE_TOOBIG) and the constraints of a row's values;
# its primary key's is again a race, and a trigger's RAISE is no check of a value (nor
# is PostgreSQL's, P0001).
_UNIQUE_VIOLATION = "23505"
_SQLITE_VALUE_CHECKS = frozenset(
    {
        "SQLITE_CONSTRAINT_NOTNULL",
        "SQLITE_CONSTRAINT_CHECK",
        "SQLITE_CONSTRAINT_FOREIGNKEY",
        "SQLITE_CONSTRAINT_DATATYPE",
        "SQLITE_MISMATCH",
        "SQLITE_TOOBIG",
    }
)


# A lost race: another writer took the next index first (PostgreSQL's unique violation,
# SQLite's primary key), or PostgreSQL gave up one of two transactions (serialization
# failure, deadlock). The advisory lock and SQLite's write lock make these rare.
_RACE_SQLSTATES = frozenset({_UNIQUE_VIOLATION, "40001", "40P01"})
_SQLITE_RACES = frozenset({"SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"})


def lost_race(error: Exception) -> bool:
    """Whether ``error`` lost a race with another writer, so that the same batch may
    commit if tried again."""
    if not isinstance(error, DBAPIError) or error.connection_invalidated:
        return False
    cause = error.orig
    if isinstance(cause, sqlite3.Error):
        return getattr(cause, "sqlite_errorname", None) in _SQLITE_RACES
    return getattr(cause, "sqlstate", None) in _RACE_SQLSTATES


def store_refusal(error: Exception) -> str | None:
    """The store's code (``SQLSTATE 22001``, ``SQLITE_CONSTRAINT_NOTNULL``) when
    ``error`` refuses a row for what it holds, else None (a lost race, a lock, a lost
    connection, anything unknown). Only the code: the error's text may quote the row."""
    if not isinstance(error, DBAPIError) or error.connection_invalidated:
        return None
    cause = error.orig
    if isinstance(cause, sqlite3.Error):
        name = getattr(cause, "sqlite_errorname", None)
        return name if name in _SQLITE_VALUE_CHECKS else None
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate is None:  # psycopg refused a value before sending it
        return "DataError" if isinstance(error, DataError) else None
    if sqlstate[:2] == "22" or (sqlstate[:2] == "23" and sqlstate != _UNIQUE_VIOLATION):
        return f"SQLSTATE {sqlstate}"
    return None


async def append_rows(
    conn: AsyncConnection, entries: list[tuple[dict[str, Any], bytes]]
) -> list[Receipt]:
    """Append leaves and the tree nodes they complete, in the caller's transaction."""
    await repository.lock_for_append(conn)
    first = await repository.next_index(conn)
    rows = [_row(first + offset, entry, leaf) for offset, (entry, leaf) in enumerate(entries)]
    frontier = await tree.frontier_at(conn, first)
    nodes = tree.node_rows(frontier, [row["leaf_hash"] for row in rows])
    await repository.insert_rows(conn, rows)
    await repository.insert_nodes(conn, nodes)
    return [Receipt(row["idx"], row["leaf_hash"]) for row in rows]


def _row(index: int, entry: dict[str, Any], leaf: bytes) -> dict[str, Any]:
    return dict(zip(repository.ENTRY_COLUMNS, (index, *_values(entry, leaf)), strict=True))


def _values(entry: dict[str, Any], leaf: bytes) -> tuple[Any, ...]:
    """An entry's row in repository.ENTRY_COLUMNS order, but for its index (the first)."""
    return (
        leaf,
        leaves.leaf_hash(leaf),
        datetime.fromisoformat(entry["time"]),
        entry["action"],
        entry["outcome"],
        entry.get("department"),
        entry.get("client"),
        entry.get("item"),
        leaves.indexed_subject(entry),  # the pseudonym, whether the leaf shows or commits to it
    )


# --- the group-commit writer's batch as one call to the driver ---------------------------
#
# What append_rows does, with the same statements, rows and nodes, run by
# db.write_in_one_call: on SQLite one function on aiosqlite's thread, on PostgreSQL one
# pipeline of three round trips (lock and size, frontier, inserts and commit).


async def _append_in_one_call(
    engine: AsyncEngine, entries: list[tuple[dict[str, Any], bytes]]
) -> list[Receipt]:
    rows = [_values(entry, leaf) for entry, leaf in entries]
    return await db.write_in_one_call(
        engine,
        sqlite_work=lambda conn: _append_now(conn, rows),
        postgres_work=lambda conn: _append_pg(conn, rows),
    )


def _append_now(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[Receipt]:
    first = repository.next_index_now(conn)
    needed = merkle.perfect_subtrees(0, first)
    found = tree.complete(needed, repository.fetch_nodes_now(conn, needed))
    indexed, nodes = _extend(merkle.Frontier.of(first, found), rows)
    repository.insert_now(conn, indexed, nodes)
    return [Receipt(row[0], row[2]) for row in indexed]


async def _append_pg(conn: Any, rows: list[tuple[Any, ...]]) -> list[Receipt]:
    first = await repository.lock_and_next_index_pg(conn)
    needed = merkle.perfect_subtrees(0, first)
    found = tree.complete(needed, await repository.fetch_nodes_pg(conn, needed))
    indexed, nodes = _extend(merkle.Frontier.of(first, found), rows)
    await repository.insert_pg(conn, indexed, nodes)
    return [Receipt(row[0], row[2]) for row in indexed]


def _extend(
    frontier: merkle.Frontier, rows: list[tuple[Any, ...]]
) -> tuple[list[tuple[Any, ...]], list[tuple[int, int, bytes]]]:
    """The rows with their indexes from the frontier's size, and the nodes they complete."""
    indexed = [(frontier.size + offset, *row) for offset, row in enumerate(rows)]
    return indexed, tree.completed_nodes(frontier, [row[2] for row in indexed])


@dataclass
class AuditScope:
    """What one audited request has learned so far, and whether it was written.

    Endpoints of audited actions get one (``request.state.audit``); as the request
    is understood (client, item, purpose, grant...), fields are noted here. It ends
    with exactly one entry: :meth:`record_success`, or :meth:`record_failure` from
    the error handler when the request is refused.
    """

    log: AuditLog
    action: str
    request_id: str
    fields: dict[str, Any] = field(default_factory=dict)
    recorded: bool = False
    client_request_id: str | None = None  # the caller's X-Request-Id, held back (below)
    held: dict[str, Any] = field(default_factory=dict)  # other text the caller chose (below)
    authenticated: bool = False
    change_pending: bool = False  # a commit with this request's entry begun, not known done
    source: str | None = None  # the caller's address as budgets count it (kit.rate_limit)

    def note(self, **fields: Any) -> None:
        self.fields.update(fields)

    def note_once_authenticated(self, **fields: Any) -> None:
        """Note fields whose text the caller chose (the record query's path item),
        now if the client has authenticated, else when it does (:meth:`client_authenticated`):
        an anonymous refusal keeps none of them."""
        if self.authenticated:
            self.note(**fields)
        else:
            self.held.update(fields)

    def client_authenticated(self) -> None:
        """The request's client has proved who it is (its access token with its DPoP
        proof or certificate; at the token endpoint its assertion or certificate): the
        entry keeps the ``X-Request-Id`` it sent as ``client_request_id``, and what was
        held by :meth:`note_once_authenticated`, which its department answers for.
        Until then the entry keeps nothing the caller chose: anyone could write a name
        or an identifier into a log that erases nothing (decision 0070, and its
        follow-up for the record query's path)."""
        self.authenticated = True
        self.note(client_request_id=self.client_request_id, **self.held)

    async def record_success(self, **fields: Any) -> Receipt:
        """Audit a request that read only: through the group-commit writer."""
        return await self._recorded(self.log.append(self._entry("ok", fields)))

    async def record_change(self, session: AsyncSession, **fields: Any) -> Receipt:
        """Audit a request that changed state: in the same transaction as the change.
        The request counts as audited once that transaction commits: one that then fails
        to commit, or is rolled back for a refusal, took its entry with it, and the
        error handler writes the request's failure (a hostile review: a right password
        whose commit failed was answered 500 with no entry at all)."""
        receipt = await self._recorded(self.log.append_within(session, self._entry("ok", fields)))
        self.recorded = False
        on_commit(session, self._committed)
        if (await session.connection()).dialect.name != "sqlite":  # SQLite's COMMIT is known
            on_commit_begun(session, self._commit_begun)
        return receipt

    def _commit_begun(self) -> None:
        self.change_pending = True

    def _committed(self) -> None:
        self.recorded, self.change_pending = True, False

    def owes_failure(self, error: HubError) -> bool:
        """Whether the request's failure is still to be written for ``error``: not when
        its entry is written, nor when a change's transaction may have committed with its
        entry though the hub cannot know (on PostgreSQL, the database went away once its
        commit had begun: the COMMIT's answer lost, a failover): a failure beside a
        committed "ok" would be two contradicting entries for one request (a hostile
        review, helper-138). The database away before the commit began is audited as
        any failure (helper-139: one pooled connection cut, the database up)."""
        if self.recorded:
            return False
        return not (self.change_pending and isinstance(error, DatabaseUnavailable))

    async def record_failure(self, error: HubError) -> Receipt | None:
        """Audit the request's refusal (or failure). One that names nobody (no client,
        person or department: an anonymous request, a token or sign-in that did not
        hold) is written within its source's budget (decision 0094); past it, None: it is
        counted, not written, and counts as recorded."""
        if self._names_nobody() and not self.log.logs_unnamed_refusal(
            self.source, action=self.action
        ):
            self.recorded = True
            return None
        entry = self._entry(error.outcome, {"reason": error.slug})
        return await self._recorded(self.log.append(entry))

    def _names_nobody(self) -> bool:
        fields = self.fields
        return not (
            self.authenticated
            or fields.get("client")
            or fields.get("person")
            or fields.get("department")
        )

    def _entry(self, outcome: str, fields: dict[str, Any]) -> dict[str, Any]:
        self.recorded = True
        return leaves.build_entry(
            time=self.log.clock.now(),
            action=self.action,
            outcome=outcome,
            request_id=self.request_id,
            **{**self.fields, **fields},
        )

    async def _recorded(self, append: Awaitable[Receipt]) -> Receipt:
        """The receipt of an entry handed to the log. An entry the log could not even
        take (it would not serialize) counts as not recorded, so that the error
        handler still writes the request's failure; one the log took but could not
        commit (AuditUnavailable) was recorded as far as this request goes."""
        try:
            return await append
        except AuditUnavailable:
            raise
        except Exception:
            self.recorded = False
            raise


async def entry_at(
    session: AsyncSession, *, index: int, reader: Reader, scope: "AuditScope | None"
) -> EntryOut:
    """One entry: its content only for a reader entitled to it (onceonly.hub.audit.readers)."""
    row = await repository.get_entry(session, index)
    if row is None:
        raise EntryNotFound(f"the log has no entry {index}")
    await _record_read(scope, reader, {"index": index})
    odd = await _stored_otherwise(session, [row], reader)
    return _entry_out(row, reader, odd.get(row.idx, set()))


async def _record_read(scope: "AuditScope | None", reader: Reader, asked: dict[str, Any]) -> None:
    """A read by a caller who could see content is an audit entry of its own, committed
    before the answer; anonymous reads see no content and are not logged."""
    if scope is not None and not reader.anonymous:
        await scope.record_success(query=asked)


def _asked(where: EntryFilter, **extra: Any) -> dict[str, Any]:
    """What the auditor asked, for the query's own audit entry: every filter but the
    subject (the entry keeps its pseudonym as ``subject``), with times in RFC 3339."""
    filters: dict[str, Any] = {
        "department": where.department,
        "item": where.item,
        "action": where.action,
        "outcome": where.outcome,
        "since": rfc3339_ms(where.since) if where.since is not None else None,
        "until": rfc3339_ms(where.until) if where.until is not None else None,
        **extra,
    }
    return {name: value for name, value in filters.items() if value is not None}


async def find(
    session: AsyncSession,
    *,
    scope: AuditScope,
    where: EntryFilter,
    cursor: int | None,
    limit: int,
) -> EntryPage:
    """Filtered, paged entries; the query itself, with every filter, is an audit entry."""
    scope.note(subject=where.subject, item=where.item)
    rows = await repository.find_entries(session, where=where, after=cursor, limit=limit + 1)
    await scope.record_success(query=_asked(where, cursor=cursor, limit=limit))
    odd = await _stored_otherwise(session, rows[:limit], AUDITOR)
    return _page(rows, limit, reader=AUDITOR, odd=odd)


async def department_entries(
    session: AsyncSession,
    *,
    department: str,
    owned: Collection[str],
    scope: AuditScope,
    cursor: int | None,
    limit: int,
) -> EntryPage:
    """The hub's side of a department's two-sided evidence (``onceonly adapter reconcile``):
    the record queries it made, and those made of the items it ``owned``."""
    rows = await repository.department_entries(
        session, department=department, owned=owned, after=cursor, limit=limit + 1
    )
    await scope.record_success(query={"cursor": cursor, "limit": limit})
    return _page(rows, limit, reader=Reader(department=department), readable_only=True)


EXPORT_COLUMNS = (
    "index",
    "time",
    "action",
    "outcome",
    "reason",
    "client",
    "person",
    "department",
    "item",
    "version",
    "subject",
    "subject_commitment",
    "committed_subject",  # not in the leaf: the pseudonym the index keeps for the commitment
    "indexed_subject",  # not in the leaf: the pseudonym the index keeps, for every entry
    "purpose",
    "grant",
    "fields",
    "commitment",
    "digest",  # entries of version 1 (before commitments)
    "request_id",
    "client_request_id",
    "event",
    "target",
    "owner",
    "owner_ms",
    "query",  # as compact JSON, keys sorted
    "v",
    "salt",
    "leaf_hash",
)
"""The CSV export's columns: the index, every member an entry may carry
(``leaves.ENTRY_FIELDS``, its version ``v`` and ``salt``, and ``digest`` of version 1),
and the leaf hash."""
_EXPORT_PAGE = 1000


# A person whose searches by subject were refused is logged at most this often (seconds)
SUBJECT_SEARCHES_LOG_EVERY = 600.0
# People whose last refusal's log line a process remembers
SUBJECT_SEARCHES_REPORTED = 10_000
SEARCH_HOUR = timedelta(hours=1)


class SubjectSearches:
    """Each person's budget of subjects searched in the log (decision 0086): at most
    ``per_hour`` different subjects counted in any hour, in the database, so that
    every process and replica of the hub counts the same budget.

    A search by subject turns an identifier into its pseudonym and shows whose records
    were read: one by one, that is an auditor's work; by the thousand, it would map the
    log's pseudonyms back to identifiers. What is counted is each different subject a
    person searches, once an hour: every page of its results (whatever cursor is sent),
    its export, and searching it again within the hour after it was counted are free,
    so neither a cursor nor a page trail can skip the count, and reading one person's
    entries page by page costs one search."""

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._reported: dict[str, float] = {}  # who -> when a refusal was last logged

    async def spend(self, engine: AsyncEngine, who: str, subject: str, *, clock: Clock) -> None:
        """Count ``subject`` (a pseudonym) for ``who`` unless it was counted in the last
        hour, or refuse (:class:`SubjectSearchesThrottled`) counting nothing: one
        serialized transaction, so that searches in several processes at once cannot all
        pass the check before any of them is counted. A refusal is logged (the person,
        never the subject) once in :data:`SUBJECT_SEARCHES_LOG_EVERY` seconds a person
        and process. Its commit is not flushed of its own: the search's audit entry,
        which comes after it in the same store, is (decision 0079)."""
        now = clock.now()
        async with write_connection(engine, durable=False) as conn:
            await repository.lock_subject_searches(conn)
            await repository.purge_subject_searches(conn, before=now - SEARCH_HOUR)
            counted = await repository.subject_searches_of(conn, person=who)
            if subject in counted:
                return
            if len(counted) < self.per_hour:
                await repository.add_subject_search(conn, person=who, subject=subject, at=now)
                return
            # the budget is whole again a subject at a time, as the oldest are an hour old
            oldest = min(aware(at) for at in counted.values())
            wait = max(1.0, (oldest + SEARCH_HOUR - now).total_seconds())
        metrics.AUDIT_SUBJECT_SEARCHES_THROTTLED.inc()
        if self._report_due(who, now=clock.monotonic()):
            log.warning(
                "%s has searched the audit log by more than %d subjects in an hour"
                " (audit_subject_searches_per_hour): searches by others are refused",
                who,
                self.per_hour,
            )
        raise SubjectSearchesThrottled(wait=wait, per_hour=self.per_hour)

    def _report_due(self, who: str, *, now: float) -> bool:
        last = self._reported.get(who)
        if last is not None and now - last < SUBJECT_SEARCHES_LOG_EVERY:
            return False
        if len(self._reported) >= SUBJECT_SEARCHES_REPORTED:  # forget the oldest
            del self._reported[next(iter(self._reported))]
        self._reported.pop(who, None)
        self._reported[who] = now
        return True


async def start_export(*, scope: AuditScope, where: EntryFilter, format: str) -> None:
    """Audit the export, with every filter and its format, before a byte of it is sent."""
    scope.note(subject=where.subject, item=where.item)
    await scope.record_success(query=_asked(where, format=format))


async def export_lines(
    sessions: async_sessionmaker[AsyncSession], *, where: EntryFilter, format: str
) -> AsyncIterator[str]:
    """Every matching entry, page by page, as JSON Lines or CSV (RFC 4180)."""
    if format == "csv":
        yield _csv_line(EXPORT_COLUMNS)
    after: int | None = None
    while True:
        async with sessions() as session:
            rows = await repository.find_entries(
                session, where=where, after=after, limit=_EXPORT_PAGE
            )
        for row in rows:
            yield _export_line(row, format=format)
        if len(rows) < _EXPORT_PAGE:
            return
        after = rows[-1].idx


def _export_line(row: AuditEntry, *, format: str) -> str:
    entry = json.loads(row.leaf)
    record: dict[str, Any] = {"index": row.idx, "leaf_hash": leaves.b64(row.leaf_hash)}
    if (committed := _committed_subject(row, entry)) is not None:
        record["committed_subject"] = committed
    if row.subject is not None:
        record["indexed_subject"] = row.subject
    if format == "jsonl":
        record["entry"] = entry
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
    values = {**entry, **record}
    cells = [_cell(values.get(column)) for column in EXPORT_COLUMNS]
    return _csv_line([neutralize_formula(cell) for cell in cells])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return str(value)


def _csv_line(cells: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    return buffer.getvalue()


def _page(
    rows: list[AuditEntry],
    limit: int,
    *,
    reader: Reader,
    readable_only: bool = False,
    odd: dict[int, set[str]] | None = None,
) -> EntryPage:
    """A page from ``limit + 1`` rows read: the extra row only says that more follow.
    ``readable_only``: leave out the rows whose content the reader may not see, and
    never name one as the cursor (the rows were read for this reader: there are none
    to leave out unless the query and the rule disagree, and then paging stops rather
    than show where an unreadable entry is)."""
    page = rows[:limit]
    more = len(rows) > limit and bool(page)
    entries = [_entry_out(row, reader, (odd or {}).get(row.idx, set())) for row in page]
    if readable_only:
        entries = [entry for entry in entries if entry.entry is not None]
        more = more and bool(entries) and entries[-1].index == page[-1].idx
    return EntryPage(entries=entries, next_cursor=str(page[-1].idx) if more else None)


def _committed_subject(row: AuditEntry, entry: dict[str, Any]) -> str | None:
    """For auditors: the pseudonym the row indexes for an entry whose leaf commits to its
    subject instead of naming it (decision 0069), which they can check against it."""
    return row.subject if "subject_commitment" in entry else None


async def _stored_otherwise(
    session: AsyncSession, rows: Sequence[AuditEntry], reader: Reader
) -> dict[int, set[str]]:
    """For an auditor, who is shown the index: its columns not stored as the hub writes
    them, by entry (repository.stored_otherwise)."""
    if not reader.auditor:
        return {}
    return await repository.stored_otherwise(session, [row.idx for row in rows])


def _indexed(value: str | None, name: str, odd: set[str] | None) -> str | None:
    return STORED_OTHERWISE if odd and name in odd else value


def _utc(moment: datetime) -> str:
    """A stored time as RFC 3339 in UTC, to the microsecond (the column's precision: a
    change under a millisecond moves an entry across a filter's bound too)."""
    return as_utc(moment).isoformat().replace("+00:00", "Z")


def _entry_out(row: AuditEntry, reader: Reader, odd: set[str] | None = None) -> EntryOut:
    leaf_hash = leaves.b64(row.leaf_hash)
    if reader.anonymous:
        return EntryOut(index=row.idx, leaf_hash=leaf_hash)
    entry = json.loads(row.leaf)
    if not reader.may_read(entry):
        return EntryOut(index=row.idx, leaf_hash=leaf_hash)
    if not reader.auditor:  # the index is the hub's: only auditors check it against the leaf
        return EntryOut(index=row.idx, leaf_hash=leaf_hash, leaf=leaves.b64(row.leaf), entry=entry)
    return EntryOut(
        index=row.idx,
        leaf_hash=leaf_hash,
        leaf=leaves.b64(row.leaf),
        entry=entry,
        committed_subject=_indexed(_committed_subject(row, entry), "subject", odd),
        indexed_subject=_indexed(row.subject, "subject", odd),
        indexed=IndexedOut(
            time=_indexed(_utc(row.time), "time", odd) or STORED_OTHERWISE,
            action=_indexed(row.action, "action", odd) or "",
            outcome=_indexed(row.outcome, "outcome", odd) or "",
            department=_indexed(row.department, "department", odd),
            client=_indexed(row.client, "client", odd),
            item=_indexed(row.item, "item", odd),
        ),
    )


async def inclusion(session: AsyncSession, *, index: int, tree_size: int) -> ProofOut:
    hashes = await tree.inclusion_proof(session, index=index, tree_size=tree_size)
    return ProofOut(hashes=[leaves.b64(h) for h in hashes])


async def consistency(session: AsyncSession, *, old_size: int, new_size: int) -> ProofOut:
    hashes = await tree.consistency_proof(session, old_size=old_size, new_size=new_size)
    return ProofOut(hashes=[leaves.b64(h) for h in hashes])


async def entries_from(
    session: AsyncSession, *, start: int, limit: int, reader: Reader, scope: "AuditScope | None"
) -> EntryPage:
    """Consecutive entries from ``start``: what a monitor downloads to recompute the root
    (leaf hashes), with the content of those entries the reader may see."""
    rows = await repository.get_entries(session, start=start, limit=limit)
    await _record_read(scope, reader, {"start": start, "limit": limit})
    more = len(rows) == limit
    odd = await _stored_otherwise(session, rows, reader)
    return EntryPage(
        entries=[_entry_out(row, reader, odd.get(row.idx, set())) for row in rows],
        next_cursor=str(rows[-1].idx + 1) if more else None,
    )


# --- an entry under the latest signed checkpoint ----------------------------------------


async def latest_signed(
    session: AsyncSession, *, verifier: notes.Verifier
) -> verdicts.SignedCheckpoint | None:
    """The latest stored checkpoint, opened with the verifier key (None: none yet)."""
    stored = await repository.latest_checkpoint(session)
    if stored is None:
        return None
    return verdicts.opened(stored.note, verifier=verifier, signed_at=aware(stored.time))


async def proof_under(
    session: AsyncSession, *, index: int, signed: verdicts.SignedCheckpoint | None
) -> list[bytes]:
    """The hub's inclusion proof of entry ``index`` for ``signed``'s size (none when
    ``signed`` does not cover it, or the stored tree cannot give one: the verdict then
    says the proof fails)."""
    if not verdicts.needs_proof(index, signed):
        return []
    assert signed is not None
    assert signed.checkpoint is not None
    try:
        return await tree.inclusion_proof(session, index=index, tree_size=signed.checkpoint.size)
    except AuditLogDamaged:
        return []


@dataclass(frozen=True)
class Inclusion:
    """Whether an entry is in the log that the latest signed checkpoint commits to:
    ``"verified"`` (its leaf, hashed afresh, and its inclusion proof lead to the
    checkpoint's root, RFC 9162 §2.1.3.2, and the checkpoint's signature holds),
    ``"pending"`` (newer than the latest checkpoint: the next one will hold it) or
    ``"failed"`` (the proof, the leaf or the checkpoint does not hold)."""

    status: str
    checkpoint_time: datetime | None


_STATUS = {
    verdicts.Verdict.INCLUDED: "verified",
    verdicts.Verdict.NOT_YET_SIGNED: "pending",
}


async def inclusion_in_latest_checkpoint(
    session: AsyncSession, *, entries: Sequence[tuple[int, bytes]], verifier: notes.Verifier
) -> dict[int, Inclusion]:
    """Each (index, leaf bytes) checked against the latest signed checkpoint, with the
    verdict of :func:`onceonly.hub.audit.verdicts.verdict` (the leaf hashed afresh)."""
    signed = await latest_signed(session, verifier=verifier)
    if signed is not None and signed.checkpoint is None:
        log.error("the latest stored checkpoint does not verify with the hub's key")
    covered = [index for index, _ in entries if verdicts.needs_proof(index, signed)]
    proofs: dict[int, list[bytes]] = {}
    if covered:
        assert signed is not None
        assert signed.checkpoint is not None
        try:  # one size check and few node queries for the whole page
            proofs = await tree.inclusion_proofs(
                session, indexes=covered, tree_size=signed.checkpoint.size
            )
        except AuditLogDamaged:
            proofs = {}  # every covered entry's proof then fails: the page says so
    found = {}
    for index, leaf in entries:
        verdict = verdicts.verdict(
            index=index,
            leaf=leaf,
            leaf_hash=leaves.leaf_hash(leaf),
            signed=signed,
            proof=proofs.get(index, []),
        )
        status = _STATUS.get(verdict, "failed")
        signed_at = signed.signed_at if signed is not None and status != "pending" else None
        found[index] = Inclusion(status, signed_at)
    return found
