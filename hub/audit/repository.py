"""All SQL of the audit log."""

import sqlite3
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlmodel import col, select

from onceonly.hub.audit.merkle import Node
from onceonly.hub.audit.models import AuditCheckpoint, AuditEntry, AuditNode, AuditSubjectSearch
from onceonly.hub.db import (
    DriverInsert,
    UnnestInsert,
    insert_rows_now,
    write_connection,
    write_in_one_call,
)

_table = AuditEntry.__table__  # type: ignore[attr-defined]
_nodes = AuditNode.__table__  # type: ignore[attr-defined]
_checkpoints = AuditCheckpoint.__table__  # type: ignore[attr-defined]
_searches = AuditSubjectSearch.__table__  # type: ignore[attr-defined]

Executor = AsyncConnection | AsyncSession
# The advisory lock every appender on one PostgreSQL takes for its transaction (the
# number is arbitrary; every process must use the same one).
_APPEND_LOCK = "SELECT pg_advisory_xact_lock(6962)"


async def lock_for_append(conn: AsyncConnection) -> None:
    """Serialize appenders across processes sharing one PostgreSQL (SQLite locks itself)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text(_APPEND_LOCK))


async def next_index(conn: Executor) -> int:
    """The number of committed entries: the tree size."""
    result = await conn.execute(sa.select(sa.func.max(_table.c.idx)))
    last = result.scalar_one_or_none()
    return 0 if last is None else int(last) + 1


async def insert_rows(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    await conn.execute(sa.insert(_table), list(rows))


async def insert_nodes(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(sa.insert(_nodes), list(rows))


async def fetch_nodes(conn: Executor, nodes: Collection[Node]) -> dict[Node, bytes]:
    """The hashes of ``nodes`` in one query: level 0 from the leaves, the rest stored."""
    leaves = [idx for level, idx in nodes if level == 0]
    inner = [node for node in nodes if node[0] > 0]
    parts: list[sa.Select[Any]] = []
    if leaves:
        parts.append(
            sa.select(sa.literal(0).label("level"), _table.c.idx, _table.c.leaf_hash).where(
                _table.c.idx.in_(leaves)
            )
        )
    if inner:
        parts.append(
            # OR of key equalities, not a row-value IN: SQLite plans the latter as a scan
            # of the whole table, the former as one primary-key lookup per node.
            sa.select(_nodes.c.level, _nodes.c.idx, _nodes.c.hash).where(
                sa.or_(*(sa.and_(_nodes.c.level == lv, _nodes.c.idx == ix) for lv, ix in inner))
            )
        )
    if not parts:
        return {}
    query = parts[0] if len(parts) == 1 else sa.union_all(*parts)
    rows = await conn.execute(query)
    return {(int(level), int(idx)): bytes(value) for level, idx, value in rows}


async def get_entries(session: AsyncSession, *, start: int, limit: int) -> list[AuditEntry]:
    query = select(AuditEntry).where(col(AuditEntry.idx) >= start)
    query = query.order_by(col(AuditEntry.idx)).limit(limit)
    return list((await session.execute(query)).scalars())


# The index columns as the hub writes them on SQLite: text (or NULL where a column takes
# none), and the time as 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC. SQLite keeps whatever it is
# given in any column (a BLOB in a TEXT column, a time in another spelling) and
# compares it as stored, so a value stored otherwise can read back as the right one in
# Python and still never match the filters and pages that compare it in SQL (decision
# 0078's follow-up).
_TIME_AS_WRITTEN = (
    "[0-9]" * 4 + "-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9]" + ("[0-9]" * 5)
)
_STORED_FORMS = (
    "SELECT idx,"
    " typeof(time) != 'text' OR time NOT GLOB :time_glob,"
    " typeof(action) != 'text',"
    " typeof(outcome) != 'text',"
    " typeof(department) NOT IN ('text', 'null'),"
    " typeof(client) NOT IN ('text', 'null'),"
    " typeof(item) NOT IN ('text', 'null'),"
    " typeof(subject) NOT IN ('text', 'null')"
    " FROM audit_entries"
)
_SQLITE_STORED_OTHERWISE = sa.text(_STORED_FORMS + " WHERE idx IN :indexes").bindparams(
    sa.bindparam("indexes", expanding=True)
)
INDEX_COLUMNS = ("time", "action", "outcome", "department", "client", "item", "subject")


async def stored_otherwise(session: AsyncSession, indexes: Sequence[int]) -> dict[int, set[str]]:
    """The index columns of the entries at ``indexes`` that are not stored as the hub
    writes them, by entry (only those with any). Always none on PostgreSQL, whose
    columns hold one type each and compare by value."""
    conn = await session.connection()
    if conn.dialect.name != "sqlite" or not indexes:
        return {}
    rows = await conn.execute(
        _SQLITE_STORED_OTHERWISE, {"indexes": list(indexes), "time_glob": _TIME_AS_WRITTEN}
    )
    return _odd(rows)


async def sqlite_file_problems(engine: AsyncEngine) -> list[str]:
    """On SQLite, what the database file's own checks and the index's stored forms
    show wrong, one line each (none on PostgreSQL): ``PRAGMA integrity_check``, which
    finds a row missing from one of the table's indexes (an index rebuilt partial by
    hand hides entries from the filters that read it), and every entry whose index
    columns are not stored as the hub writes them (:func:`stored_otherwise`)."""
    if engine.dialect.name != "sqlite":
        return []
    async with engine.connect() as conn:
        checked = [str(row[0]) for row in await conn.exec_driver_sql("PRAGMA integrity_check")]
        found = [f"the database file: {line}" for line in checked if line != "ok"]
        rows = await conn.execute(sa.text(_STORED_FORMS), {"time_glob": _TIME_AS_WRITTEN})
        for idx, columns in _odd(rows).items():
            found.append(
                f"entry {idx}: its index column(s) {', '.join(sorted(columns))} not stored"
                " as the hub writes them (the filters that compare them miss it)"
            )
    return found


@dataclass(frozen=True)
class IndexCheck:
    """What :func:`postgres_index_problems` found: one line per damaged index, or why
    the indexes could not be checked (``unchecked``; then ``problems`` is empty)."""

    problems: list[str]
    unchecked: str | None = None  # not installed, or not granted: the operator's choice
    indexes: int = 0
    failed: str | None = None  # a check that could not run (a timeout, a lost connection)


_AUDIT_TABLES = ("audit_entries", "audit_nodes", "audit_checkpoints")
_BTREE_INDEXES = """
SELECT c.oid, c.relname FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_am a ON a.oid = c.relam
WHERE a.amname = 'btree' AND i.indisvalid AND i.indisready AND i.indrelid IN ({tables})
ORDER BY c.relname
"""
_AMCHECK_SCHEMA = """
SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'amcheck'
"""
_NOT_INSTALLED = (
    "the amcheck extension is not installed in this database (as a superuser: CREATE"
    " EXTENSION amcheck; then, unless the hub's role is a superuser, GRANT EXECUTE ON"
    " FUNCTION bt_index_check(regclass, boolean) TO it)"
)


# What amcheck raises for an index that is damaged (its rows or its order): PostgreSQL's
# index_corrupted and data_corrupted. Any other error (a statement timeout, a cancel, a
# lost connection, an amcheck too old for its function) checked nothing: no finding
# about the log, but a check that could not be made (exit 2).
_DAMAGE = frozenset({"XX002", "XX001"})
_NO_RIGHT = "42501"  # insufficient_privilege: amcheck's functions are not granted


async def postgres_index_problems(engine: AsyncEngine) -> IndexCheck:
    """On PostgreSQL, PostgreSQL's own check of the audit log's valid B-tree indexes
    (``amcheck``'s ``bt_index_check`` with ``heapallindexed``: every row of the table is
    in the index, and the index is ordered; an index that lost a row hides that entry
    from the filters that read it): one line per damaged index (none on SQLite, whose
    file check is :func:`sqlite_file_problems`). Without the extension, or the right to
    run it, ``unchecked`` says why (the hub does not install an extension into its
    database itself); a check that fails for another reason than damage is ``failed``."""
    if engine.dialect.name != "postgresql":
        return IndexCheck(problems=[])
    async with engine.connect() as conn:
        schema = (await conn.execute(sa.text(_AMCHECK_SCHEMA))).scalar_one_or_none()
        await conn.rollback()
        if schema is None:
            return IndexCheck(problems=[], unchecked=_NOT_INSTALLED)
        tables = ", ".join(f"to_regclass('{table}')" for table in _AUDIT_TABLES)
        found = await conn.execute(sa.text(_BTREE_INDEXES.format(tables=tables)))
        indexes = [(int(row[0]), str(row[1])) for row in found]
        await conn.rollback()
        # amcheck's function by its whole name: a search path could be redirected (a
        # schema renamed "$user" means the role's own: helper-139); "%" escaped for
        # psycopg's parameters, and no SQLAlchemy text to read a ":" as a parameter
        check = conn.dialect.identifier_preparer.quote_schema(schema).replace("%", "%%")
        statement = f"SELECT {check}.bt_index_check(%(oid)s::oid::regclass, true)"
        problems = []
        for oid, name in indexes:
            try:
                async with conn.begin():
                    await conn.exec_driver_sql(statement, {"oid": oid})
            except sa.exc.DBAPIError as error:
                reason = str(error.orig).splitlines()[0]
                state = getattr(error.orig, "sqlstate", None)
                if state in _DAMAGE:
                    problems.append(f"the index {name}: {reason}")
                    continue
                if state == _NO_RIGHT:
                    return IndexCheck(problems=problems, unchecked=f"amcheck on {name}: {reason}")
                return IndexCheck(problems=problems, failed=f"amcheck on {name}: {reason}")
    return IndexCheck(problems=problems, indexes=len(indexes))


def _odd(rows: Iterable[Any]) -> dict[int, set[str]]:
    """From rows of (idx, one flag per INDEX_COLUMNS): the flagged columns by entry."""
    odd: dict[int, set[str]] = {}
    for idx, *flags in rows:
        columns = {name for name, flag in zip(INDEX_COLUMNS, flags, strict=True) if flag}
        if columns:
            odd[idx] = columns
    return odd


async def latest_checkpoint(conn: Executor) -> AuditCheckpoint | None:
    query = sa.select(_checkpoints).order_by(_checkpoints.c.tree_size.desc()).limit(1)
    row = (await conn.execute(query)).mappings().first()
    return AuditCheckpoint(**row) if row is not None else None


async def insert_checkpoint(conn: AsyncConnection, checkpoint: AuditCheckpoint) -> None:
    """Store a checkpoint unless one of that size exists (another process was first)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(_checkpoints).values(checkpoint.model_dump())
    await conn.execute(statement.on_conflict_do_nothing(index_elements=["tree_size"]))


async def store_checkpoint(engine: AsyncEngine, checkpoint: AuditCheckpoint) -> None:
    """:func:`insert_checkpoint` in a transaction of its own. On SQLite one call on the
    driver's thread behind the write gate (``db.write_in_one_call``): statement by
    statement it held SQLite's write lock 6-13 ms a second at half the hub's maximum
    rate, each statement a trip and a GIL wait, and the audit writer that met it slept
    in SQLite's busy handler."""
    if engine.dialect.name != "sqlite":
        async with write_connection(engine) as conn:
            await insert_checkpoint(conn, checkpoint)
        return
    insert = _CHECKPOINT_NOW
    (row,) = insert.bind([[getattr(checkpoint, column.name) for column in _checkpoints.columns]])

    def store(db: sqlite3.Connection) -> None:
        db.execute(insert.sql + " ON CONFLICT (tree_size) DO NOTHING", row)

    await write_in_one_call(engine, sqlite_work=store)


async def replace_checkpoint_note(
    engine: AsyncEngine, checkpoint: AuditCheckpoint, *, note: str
) -> bool:
    """Store ``note`` as ``checkpoint``'s if no other process changed it first (the
    note read is the condition): whether it was stored. The size, root and time stay:
    only a cosigned note's signatures grow (decision 0091)."""
    statement = (
        sa.update(_checkpoints)
        .where(
            _checkpoints.c.tree_size == checkpoint.tree_size,
            _checkpoints.c.note == checkpoint.note,
        )
        .values(note=note)
    )
    async with write_connection(engine) as conn:
        return (await conn.execute(statement)).rowcount == 1


async def checkpoints_from(
    session: AsyncSession, *, since_size: int, limit: int
) -> list[AuditCheckpoint]:
    query = select(AuditCheckpoint).where(col(AuditCheckpoint.tree_size) >= since_size)
    query = query.order_by(col(AuditCheckpoint.tree_size)).limit(limit)
    return list((await session.execute(query)).scalars())


async def get_entry(session: AsyncSession, index: int) -> AuditEntry | None:
    return await session.get(AuditEntry, index)


@dataclass(frozen=True)
class EntryFilter:
    """Which entries an auditor asks for, each given criterion to hold, in the log's own
    terms: ``subject`` is the pseudonym that entries keep, never the identifier."""

    subject: str | None = None
    department: str | None = None
    item: str | None = None
    action: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def department_entries(
    session: AsyncSession,
    *,
    department: str,
    owned: Collection[str],
    after: int | None,
    limit: int,
) -> list[AuditEntry]:
    """The record queries whose content ``department`` may read (as
    ``readers.Reader.may_read`` decides): those its clients made, and those of the items
    it ``owned`` that its adapter was asked to answer (``owner``). Only those rows: a
    query of its item refused before the hub called it is none of its business, not
    even by its index (decision 0070), so a page's last row, the next cursor, is always
    one it may read, however many rows it may not read lie between."""
    dialect = (await session.connection()).dialect.name
    own = sa.and_(
        col(AuditEntry.department) == department,
        col(AuditEntry.client).is_not(None),
        _leaf_member(dialect, "person").is_(None),
    )
    branches = [
        _first_after(col(AuditEntry.department) == department, own, after=after, limit=limit)
    ]
    asked = _leaf_member(dialect, "owner") == department
    branches += [
        _first_after(col(AuditEntry.item) == item, asked, after=after, limit=limit)
        for item in owned
    ]
    found = sa.union(*branches).subquery()  # a row can be in two branches: once
    query = select(AuditEntry).join(found, col(AuditEntry.idx) == found.c.idx)
    query = query.order_by(found.c.idx).limit(limit)
    return list((await session.execute(query)).scalars())


def _first_after(
    indexed: sa.ColumnElement[bool], rule: sa.ColumnElement[bool], *, after: int | None, limit: int
) -> sa.Select[Any]:
    """The indexes of the first ``limit`` record queries after ``after`` on which
    ``indexed`` (a department or an item, which ix_audit_department and ix_audit_item
    lead with) and ``rule`` hold, read in that index's order: only the rows ``indexed``
    names are visited, so the time a page takes says nothing of other departments' and
    items' queries (decision 0070). The action is compared as ``action || ''``, which
    no index matches: on ix_audit_action the planners would visit every department's
    record queries after the cursor."""
    query = select(col(AuditEntry.idx)).where(
        indexed, col(AuditEntry.action).concat("") == "record.query", rule
    )
    if after is not None:
        query = query.where(col(AuditEntry.idx) > after)
    first = query.order_by(col(AuditEntry.idx)).limit(limit).subquery()
    return select(first.c.idx)


def _leaf_member(dialect: str, name: str) -> sa.ColumnElement[Any]:
    """A top-level member of an entry read from its leaf (RFC 8785 JSON in UTF-8), NULL
    when the entry has none: for a rule on a member without a column of its own, on
    rows that indexed columns have already narrowed down."""
    leaf = col(AuditEntry.leaf)
    if dialect == "postgresql":
        member: sa.ColumnElement[Any] = sa.cast(
            sa.func.convert_from(leaf, "UTF8"), postgresql.JSONB
        )[name].astext
        return member
    return sa.func.json_extract(sa.cast(leaf, sa.Text), f"$.{name}")


async def find_entries(
    session: AsyncSession, *, where: EntryFilter, after: int | None, limit: int
) -> list[AuditEntry]:
    query = select(AuditEntry)
    for column in ("subject", "department", "item", "action", "outcome"):
        value = getattr(where, column)
        if value is not None:
            query = query.where(getattr(AuditEntry, column) == value)
    if where.since is not None:
        query = query.where(col(AuditEntry.time) >= where.since)
    if where.until is not None:
        query = query.where(col(AuditEntry.time) < where.until)
    if after is not None:
        query = query.where(col(AuditEntry.idx) > after)
    query = query.order_by(col(AuditEntry.idx)).limit(limit)
    return list((await session.execute(query)).scalars())


# --- the append on the driver's own connection (onceonly.hub.db.write_in_one_call) -----
#
# The same statements as lock_for_append, next_index, fetch_nodes, insert_rows and
# insert_nodes above, for a batch of the group-commit writer that runs as one call to
# the driver: on SQLite synchronously on aiosqlite's thread, on PostgreSQL on the
# psycopg connection in one pipeline (a fetch sends what is queued and waits once).

ENTRY_COLUMNS = tuple(column.name for column in _table.columns)
"""The columns of ``audit_entries`` in the order of the rows given to ``insert_now``."""

_INSERTS_NOW = DriverInsert(_table, pysqlite.dialect()), DriverInsert(_nodes, pysqlite.dialect())
_CHECKPOINT_NOW = DriverInsert(_checkpoints, pysqlite.dialect())
_UNNEST_ENTRIES, _UNNEST_NODES = UnnestInsert(_table), UnnestInsert(_nodes)
_LAST_INDEX = f"SELECT max(idx) FROM {_table.name}"
# fetch_nodes on PostgreSQL, one text whatever the nodes (their keys given as two arrays),
# so that psycopg prepares it after a few batches on a connection: the text of _nodes_sql
# changes with the number of nodes, and each text was parsed and planned afresh (0.2-0.7
# ms of the server's CPU a batch, more than running it). Prepared, it runs one generic
# plan, made once: a primary-key lookup per key, whatever the tables' sizes when it is
# made (a join of the arrays with the tables was planned as a hash join over sequential
# scans while the tables were small, and kept at any size). The arrays are read through
# sub-selects so that a plan for given values costs the same as the generic one: else
# PostgreSQL, which sees the arrays' lengths in the former, plans every batch afresh.
_NODES_PG = (
    "SELECT level, idx, hash FROM (SELECT k.level, k.idx, CASE WHEN k.level = 0"
    f" THEN (SELECT e.leaf_hash FROM {_table.name} AS e WHERE e.idx = k.idx)"
    f" ELSE (SELECT n.hash FROM {_nodes.name} AS n WHERE n.level = k.level AND n.idx = k.idx)"
    " END AS hash FROM unnest((SELECT %s::smallint[]), (SELECT %s::bigint[])) AS k(level, idx)"
    " OFFSET 0) AS found WHERE hash IS NOT NULL"
)


def _nodes_sql(nodes: Collection[Node], mark: str) -> tuple[str, list[int]]:
    """fetch_nodes's query as text with ``mark`` placeholders, and its parameters (SQLite)."""
    leaves = [idx for level, idx in nodes if level == 0]
    inner = [node for node in nodes if node[0] > 0]
    parts, params = [], []
    if leaves:
        in_list = ", ".join([mark] * len(leaves))
        parts.append(f"SELECT 0, idx, leaf_hash FROM {_table.name} WHERE idx IN ({in_list})")
        params.extend(leaves)
    if inner:
        # an OR of key equalities: one primary-key lookup per node (see fetch_nodes)
        keys = " OR ".join([f"(level = {mark} AND idx = {mark})"] * len(inner))
        parts.append(f"SELECT level, idx, hash FROM {_nodes.name} WHERE {keys}")
        params.extend(value for node in inner for value in node)
    return " UNION ALL ".join(parts), params


def _found(rows: Iterable[Sequence[Any]]) -> dict[Node, bytes]:
    return {(int(level), int(idx)): bytes(value) for level, idx, value in rows}


def next_index_now(db: sqlite3.Connection) -> int:
    """next_index on the sqlite3 connection, in the caller's write transaction."""
    (last,) = db.execute(_LAST_INDEX).fetchone()
    return 0 if last is None else int(last) + 1


def fetch_nodes_now(db: sqlite3.Connection, nodes: Collection[Node]) -> dict[Node, bytes]:
    if not nodes:
        return {}
    sql, params = _nodes_sql(nodes, "?")
    return _found(db.execute(sql, params).fetchall())


def insert_now(
    db: sqlite3.Connection, rows: Sequence[Sequence[Any]], nodes: Sequence[Sequence[Any]]
) -> None:
    """Entries (in ENTRY_COLUMNS order) and nodes (level, idx, hash) on SQLite."""
    entries, inner = _INSERTS_NOW
    insert_rows_now(db, entries.sql, entries.bind(rows))
    insert_rows_now(db, inner.sql, inner.bind(nodes))


async def lock_and_next_index_pg(pg: Any) -> int:
    """lock_for_append, then next_index (two statements: the second reads after the lock
    is held), sent together on the psycopg connection."""
    cursor = pg.cursor()
    await cursor.execute(_APPEND_LOCK)
    await cursor.execute(_LAST_INDEX)
    row = await cursor.fetchone()
    last = None if row is None else row[0]
    return 0 if last is None else int(last) + 1


async def fetch_nodes_pg(pg: Any, nodes: Collection[Node]) -> dict[Node, bytes]:
    if not nodes:
        return {}
    cursor = pg.cursor()
    await cursor.execute(_NODES_PG, ([level for level, _ in nodes], [idx for _, idx in nodes]))
    return _found(await cursor.fetchall())


async def insert_pg(pg: Any, rows: Sequence[Sequence[Any]], nodes: Sequence[Sequence[Any]]) -> None:
    """Entries and nodes on PostgreSQL, queued in the pipeline (sent with the commit)."""
    cursor = pg.cursor()
    await cursor.execute(_UNNEST_ENTRIES.sql, _UNNEST_ENTRIES.params(rows))
    if nodes:
        await cursor.execute(_UNNEST_NODES.sql, _UNNEST_NODES.params(nodes))


async def lock_subject_searches(conn: AsyncConnection) -> None:
    """Serialize the check-and-count of searches by subject across processes sharing
    one PostgreSQL (SQLite's BEGIN IMMEDIATE serializes writers itself)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(8628)"))


async def purge_subject_searches(conn: AsyncConnection, *, before: datetime) -> None:
    """Subjects counted at or before ``before`` count for nothing: forgotten, for everyone."""
    await conn.execute(sa.delete(_searches).where(_searches.c.counted_at <= before))


async def subject_searches_of(conn: AsyncConnection, *, person: str) -> dict[str, datetime]:
    """The subjects (pseudonyms) counted for ``person``, with when each was counted."""
    query = sa.select(_searches.c.subject, _searches.c.counted_at).where(
        _searches.c.person == person
    )
    return {row[0]: row[1] for row in (await conn.execute(query)).all()}


async def add_subject_search(
    conn: AsyncConnection, *, person: str, subject: str, at: datetime
) -> None:
    await conn.execute(sa.insert(_searches).values(person=person, subject=subject, counted_at=at))
