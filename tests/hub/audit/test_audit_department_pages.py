"""A department's pages of the audit log (``GET /v1/audit/department-entries``) are read
through the indexes that lead with what it may read (decision 0070, follow-up): its own
department's rows and its own items' rows, never every department's record queries
after the cursor, whose number the time of a page would otherwise tell it."""

import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from onceonly.hub.audit import repository
from onceonly.hub.audit.readers import Reader
from onceonly.hub.db import make_engine, session_factory
from onceonly.hub.kit.jcs import canonical_json

pytestmark = pytest.mark.anyio

OWNERS = {"tax.income": "tax", "person.name": "civil-registry", "benefit.status": "social-welfare"}
DEPARTMENTS = [*sorted(set(OWNERS.values())), "police"]  # police owns no item


def _owned(department: str) -> list[str]:
    return sorted(item for item, owner in OWNERS.items() if owner == department)


def _leaf(rng: random.Random) -> dict[str, Any]:
    """One entry as the hub might write it: a client's query (refused before the owner
    was called, or answered by it), a person's, one without credentials, or another act."""
    item = rng.choice([*OWNERS, "unknown.item"])
    entry: dict[str, Any] = {"action": "record.query", "outcome": "allowed", "item": item}
    kind = rng.choice(["client", "client", "client-refused", "person", "anonymous", "other"])
    if kind != "anonymous":
        entry["department"] = rng.choice(DEPARTMENTS)
    if kind in ("client", "client-refused", "other"):
        entry["client"] = f"{entry['department']}-system"
    if kind == "person":
        entry["person"] = "ada"
    if kind == "client" and item in OWNERS:
        entry["owner"] = OWNERS[item]
    if kind in ("client-refused", "anonymous"):
        entry["outcome"] = "refused"
    if kind == "other":
        entry["action"] = "grant.request"
    return entry


def _rows(leaves: list[dict[str, Any]], first: int) -> Iterator[dict[str, Any]]:
    now = datetime.now(UTC)
    for idx, leaf in enumerate(leaves, start=first):
        yield {
            "idx": idx,
            "leaf": canonical_json(leaf),
            "leaf_hash": idx.to_bytes(32, "big"),
            "time": now,
            "action": leaf["action"],
            "outcome": leaf["outcome"],
            "department": leaf.get("department"),
            "client": leaf.get("client"),
            "item": leaf.get("item"),
            "subject": None,
        }


async def _append(engine: AsyncEngine, leaves: list[dict[str, Any]], *, first: int) -> None:
    table = sa.table(
        "audit_entries",
        *(sa.column(name) for name in next(_rows([{"action": "", "outcome": ""}], 0))),
    )
    async with engine.begin() as conn:
        await conn.execute(table.insert(), list(_rows(leaves, first)))


async def _page(
    engine: AsyncEngine, department: str, *, after: int | None, limit: int
) -> list[int]:
    async with session_factory(engine)() as session:
        rows = await repository.department_entries(
            session, department=department, owned=_owned(department), after=after, limit=limit
        )
    return [row.idx for row in rows]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_a_departments_pages_hold_the_record_queries_it_may_read_in_order(
    engine: AsyncEngine,
) -> None:
    rng = random.Random(70)
    leaves = [_leaf(rng) for _ in range(600)]
    await _append(engine, leaves, first=0)
    for department in DEPARTMENTS:
        reader = Reader(department=department)
        readable = [
            idx
            for idx, leaf in enumerate(leaves)
            if leaf["action"] == "record.query" and reader.may_read(leaf)
        ]
        assert len(readable) > 50
        for limit in (1, 7, 50):
            cursor, read = None, []
            while page := await _page(engine, department, after=cursor, limit=limit):
                assert len(page) <= limit
                read += page
                cursor = page[-1]
            assert read == readable, (department, limit)
        middle = readable[len(readable) // 2]
        after = [idx for idx in readable if idx > middle][:13]
        assert await _page(engine, department, after=middle, limit=13) == after
        assert await _page(engine, department, after=middle - 1, limit=1) == [middle]


async def test_a_departments_page_visits_only_rows_its_department_or_its_items_lead_to(
    engine: AsyncEngine,
) -> None:
    """The plan, on a log where anyone's refused record queries (no department, no
    client: 20,000 of them, made without credentials) outnumber the department's own:
    every read of ``audit_entries`` is a search on ix_audit_department (its rows) or
    ix_audit_item (its items' rows), or by the primary key; none is on ix_audit_action
    and none is a scan (before, on SQLite: ix_audit_action, every department's record
    queries after the cursor)."""
    rng = random.Random(70)
    leaves = [_leaf(rng) for _ in range(300)]
    noise = [
        {"action": "record.query", "outcome": "refused", "item": rng.choice(["person.name", "x"])}
        for _ in range(20_000)
    ]
    await _append(engine, leaves, first=0)
    await _append(engine, noise, first=len(leaves))
    await _append(engine, leaves, first=len(leaves) + len(noise))
    async with engine.begin() as conn:
        await conn.exec_driver_sql("ANALYZE")
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    sa.event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        assert await _page(engine, "tax", after=10, limit=1)
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", capture)
    (statement, parameters) = next((s, p) for s, p in statements if "audit_entries" in s)
    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    async with engine.connect() as conn:
        plan = [
            " ".join(str(cell) for cell in row)
            for row in await conn.exec_driver_sql(explain + statement, parameters)
        ]
    text = "\n".join(plan)
    assert "ix_audit_action" not in text, text
    assert "ix_audit_department" in text, text
    assert "ix_audit_item" in text, text
    if engine.dialect.name == "sqlite":
        reads = [line for line in plan if "audit_entries" in line]
        assert all(" SEARCH " in f" {line} " for line in reads), text
    else:
        assert "Seq Scan" not in text, text
