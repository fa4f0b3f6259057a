"""The stored tree (audit_nodes): roots and proofs from stored nodes equal the
independent RFC 6962 reference, on SQLite and PostgreSQL, with several writers.

The log is filled once per database through the real writers (group commit with
odd batch sizes, and ``append_within`` in a session's own transaction), so that
node computation across batch boundaries is exercised.
"""

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from onceonly.hub.audit import leaves, merkle, tree
from onceonly.hub.audit.checkpoints import Checkpointer, load_signer
from onceonly.hub.audit.exceptions import InvalidTreeRequest
from onceonly.hub.audit.notes import Checkpoint, open_note
from onceonly.hub.audit.service import AuditLog
from onceonly.hub.db import WRITE_OPTION, make_engine, session_factory
from onceonly.hub.migrate import upgrade

from tests.hub import rfc6962_reference as ref
from tests.hub_testing import DATABASES, module_database

SIZE = 1000


def _entry(n: int) -> dict[str, object]:
    return leaves.build_entry(
        time=datetime.now(UTC), action="record.query", outcome="ok", request_id=f"r{n}"
    )


async def _append(engine: AsyncEngine, count: int, *, batch_size: int) -> None:
    log = AuditLog(engine, batch_size=batch_size)
    await log.start()
    try:
        await asyncio.gather(*(log.append(_entry(n)) for n in range(count)))
    finally:
        await log.stop()


async def _append_within(engine: AsyncEngine, count: int) -> None:
    log = AuditLog(engine)
    for n in range(count):
        async with session_factory(engine)() as session:
            # as WriteSessionDep does: on SQLite, take the write lock at BEGIN
            await session.connection(execution_options={WRITE_OPTION: True})
            await log.append_within(session, _entry(n))
            await session.commit()


async def _leaves(engine: AsyncEngine) -> list[bytes]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT leaf FROM audit_entries ORDER BY idx"))
        return [bytes(row[0]) for row in rows]


async def _fill(engine: AsyncEngine) -> list[bytes]:
    await _append(engine, 3, batch_size=1)
    await _append_within(engine, 5)
    await _append(engine, 600, batch_size=37)
    await _append_within(engine, 9)
    await _append(engine, SIZE - 617, batch_size=64)
    return await _leaves(engine)


@pytest.fixture(scope="module", autouse=True)
def remembered_subtree_hashes() -> Iterator[None]:
    """The reference's MTH remembers what it computed, by the leaves it was given: the
    tests ask it for every size's root and every leaf's path in sizes up to 1000, which
    recompute the same subtrees over and over (quadratic in the naive recursion). The
    reference itself is unchanged; each hash is still computed by it, once."""
    computed: dict[tuple[bytes, ...], bytes] = {}
    naive = ref.mth

    def mth(leaves: list[bytes]) -> bytes:
        key = tuple(leaves)
        found = computed.get(key)
        if found is None:
            found = computed[key] = naive(leaves)
        return found

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ref, "mth", mth)
        yield


@dataclass
class StoredLog:
    runner: asyncio.Runner
    engine: AsyncEngine
    leaves: list[bytes]


@pytest.fixture(scope="module", params=DATABASES)
def stored(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StoredLog]:
    url = module_database(request, tmp_path_factory)
    with asyncio.Runner() as runner:
        engine = make_engine(url)
        log_leaves = runner.run(_fill(engine))
        assert len(log_leaves) == SIZE
        yield StoredLog(runner, engine, log_leaves)
        runner.run(engine.dispose())


async def _roots(engine: AsyncEngine, sizes: range) -> list[bytes]:
    async with engine.connect() as conn:
        return [await tree.root_at(conn, size) for size in sizes]


def test_root_from_stored_nodes_equals_mth_for_every_size(stored: StoredLog) -> None:
    roots = stored.runner.run(_roots(stored.engine, range(SIZE + 1)))
    for size, root in enumerate(roots):
        assert root == ref.mth(stored.leaves[:size]), size


@st.composite
def size_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, SIZE))
    return size, draw(st.integers(0, size - 1))


async def _inclusion(engine: AsyncEngine, index: int, size: int) -> list[bytes]:
    async with engine.connect() as conn:
        return await tree.inclusion_proof(conn, index=index, tree_size=size)


async def _consistency(engine: AsyncEngine, old: int, new: int) -> list[bytes]:
    async with engine.connect() as conn:
        return await tree.consistency_proof(conn, old_size=old, new_size=new)


@settings(max_examples=150, deadline=None)
@given(case=size_and_index())
def test_inclusion_proofs_from_stored_nodes_equal_the_reference(
    stored: StoredLog, case: tuple[int, int]
) -> None:
    size, index = case
    proof = stored.runner.run(_inclusion(stored.engine, index, size))
    assert proof == ref.path(index, stored.leaves[:size])
    leaf_hash = ref.sha256(b"\x00" + stored.leaves[index])
    assert ref.verify_inclusion(index, size, leaf_hash, proof, ref.mth(stored.leaves[:size]))


async def _inclusions(engine: AsyncEngine, indexes: list[int], size: int) -> dict[int, list[bytes]]:
    async with engine.connect() as conn:
        return await tree.inclusion_proofs(conn, indexes=indexes, tree_size=size)


def test_a_page_of_inclusion_proofs_equals_the_reference_one_by_one(stored: StoredLog) -> None:
    """Every leaf's path in every size, asked for together (one size check, node queries
    of at most 300 nodes), equals RFC 9162's path of each alone."""
    for size in (1, 2, 7, SIZE // 2, SIZE):
        indexes = list(range(size))
        proofs = stored.runner.run(_inclusions(stored.engine, indexes, size))
        assert set(proofs) == set(indexes)
        for index in indexes:
            assert proofs[index] == ref.path(index, stored.leaves[:size]), (size, index)


@settings(max_examples=150, deadline=None)
@given(new=st.integers(1, SIZE), data=st.data())
def test_consistency_proofs_from_stored_nodes_equal_the_reference(
    stored: StoredLog, new: int, data: st.DataObject
) -> None:
    old = data.draw(st.integers(0, new))
    proof = stored.runner.run(_consistency(stored.engine, old, new))
    if old in (0, new):
        assert proof == []
        return
    assert proof == ref.proof(old, stored.leaves[:new])
    old_root, new_root = ref.mth(stored.leaves[:old]), ref.mth(stored.leaves[:new])
    assert ref.verify_consistency(old, new, old_root, new_root, proof)


@pytest.mark.parametrize(("index", "size"), [(SIZE, SIZE), (0, SIZE + 1), (0, 0), (5, 3)])
def test_inclusion_outside_the_log_is_refused(stored: StoredLog, index: int, size: int) -> None:
    with pytest.raises(InvalidTreeRequest):
        stored.runner.run(_inclusion(stored.engine, index, size))


@pytest.mark.parametrize(("old", "new"), [(5, 4), (1, SIZE + 1)])
def test_consistency_outside_the_log_is_refused(stored: StoredLog, old: int, new: int) -> None:
    with pytest.raises(InvalidTreeRequest):
        stored.runner.run(_consistency(stored.engine, old, new))


async def _stored_nodes(engine: AsyncEngine) -> dict[merkle.Node, bytes]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT level, idx, hash FROM audit_nodes"))
        return {(int(r[0]), int(r[1])): bytes(r[2]) for r in rows}


def _expected_nodes(leaf_hashes: list[bytes]) -> dict[merkle.Node, bytes]:
    frontier, nodes = merkle.Frontier(), {}
    for leaf_hash in leaf_hashes:
        nodes.update(frontier.append(leaf_hash))
    return nodes


@pytest.mark.anyio
async def test_two_writers_and_in_transaction_appends_keep_the_nodes_consistent(
    database_url: str,
) -> None:
    """Two processes (engines) appending at once, plus changes that audit in their own
    transaction: every stored node is the one the leaves imply, none missing."""
    engines = [make_engine(database_url), make_engine(database_url)]
    try:
        await asyncio.gather(
            _append(engines[0], 300, batch_size=17),
            _append(engines[1], 300, batch_size=50),
            _append_within(engines[0], 20),
        )
        log_leaves = await _leaves(engines[0])
        stored_nodes = await _stored_nodes(engines[1])
        root = (await _roots(engines[1], range(len(log_leaves), len(log_leaves) + 1)))[0]
    finally:
        for engine in engines:
            await engine.dispose()
    assert len(log_leaves) == 620
    assert stored_nodes == _expected_nodes([merkle.hash_leaf(leaf) for leaf in log_leaves])
    assert root == ref.mth(log_leaves)


@pytest.mark.anyio
async def test_migration_stores_the_nodes_of_entries_written_before_it(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    upgrade(url, "0001")
    engine = make_engine(url)
    rows = [
        {
            "idx": n,
            "leaf": leaf,
            "leaf_hash": merkle.hash_leaf(leaf),
            "time": datetime.now(UTC),
            "action": "x",
            "outcome": "ok",
        }
        for n, leaf in enumerate(f"old {n}".encode() for n in range(77))
    ]
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO audit_entries (idx, leaf, leaf_hash, time, action, outcome)"
                " VALUES (:idx, :leaf, :leaf_hash, :time, :action, :outcome)"
            ),
            rows,
        )
    upgrade(url)
    try:
        stored_nodes = await _stored_nodes(engine)
    finally:
        await engine.dispose()
    assert stored_nodes == _expected_nodes([row["leaf_hash"] for row in rows])


@pytest.mark.anyio
async def test_two_checkpointers_sign_one_checkpoint_per_size(
    database_url: str, tmp_path: Path
) -> None:
    engines = [make_engine(database_url), make_engine(database_url)]
    signer = load_signer(keys_dir=tmp_path, origin="hub.test/audit", create=True)
    checkpointers = [Checkpointer(e, signer=signer, interval=1) for e in engines]
    try:
        for count in (0, 5, 5, 12):
            await _append(engines[0], count, batch_size=4)
            await asyncio.gather(*(c.checkpoint() for c in checkpointers))
        async with engines[1].connect() as conn:
            rows = (
                await conn.execute(sa.text("SELECT tree_size, note FROM audit_checkpoints"))
            ).all()
            root = await tree.root_at(conn, 22)
    finally:
        for engine in engines:
            await engine.dispose()
    assert sorted(int(r[0]) for r in rows) == [0, 5, 10, 22]
    latest = Checkpoint.parse(open_note(max(rows)[1], signer.verifier))
    assert (latest.size, latest.root) == (22, root)
