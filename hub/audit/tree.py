"""The stored Merkle tree: roots and proofs from stored subtree hashes.

Each answer reads the tree size and then, in one query, the O(log n) perfect
subtrees it needs (:mod:`onceonly.hub.audit.merkle` says which). Appends extend the tree
from its frontier (the right-edge subtrees) without reading anything else. A needed
leaf or node that is not stored is :class:`AuditLogDamaged`, never a KeyError; a proof
refused for it is logged (the checkpointer logs what it finds itself, once).
"""

import bisect
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from onceonly.hub.audit import leaves, merkle, repository
from onceonly.hub.audit.exceptions import AuditLogDamaged, InvalidTreeRequest
from onceonly.hub.audit.models import AuditEntry
from onceonly.hub.audit.repository import Executor

log = logging.getLogger("onceonly.audit")


async def current_size(conn: Executor) -> int:
    return await repository.next_index(conn)


async def root_at(conn: Executor, size: int) -> bytes:
    """MTH(D[0:size]) (RFC 9162 §2.1.1) from at most log2(size) + 1 stored nodes."""
    nodes = merkle.perfect_subtrees(0, size)
    found = await _fetch(conn, nodes)
    return merkle.fold([found[node] for node in nodes])


async def inclusion_proof(conn: Executor, *, index: int, tree_size: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``tree_size`` (RFC 9162 §2.1.3.1)."""
    await _check_size(conn, tree_size)
    if index >= tree_size:
        raise InvalidTreeRequest(f"index {index} is not in a tree of size {tree_size}")
    return await _proof(conn, merkle.inclusion_ranges(index, tree_size))


# Nodes asked for in one query: an OR of key equalities, kept well below SQLite's limit
# on an expression's depth (1,000).
_NODES_PER_QUERY = 300


async def inclusion_proofs(
    conn: Executor, *, indexes: Sequence[int], tree_size: int
) -> dict[int, list[bytes]]:
    """The audit paths of several leaves in the tree of ``tree_size``, from one check of
    the size and as few node queries as their shared nodes allow (a page of entries)."""
    await _check_size(conn, tree_size)
    ranges = {index: merkle.inclusion_ranges(index, tree_size) for index in indexes}
    if any(index >= tree_size for index in ranges):
        raise InvalidTreeRequest(f"an index is not in a tree of size {tree_size}")
    nodes = sorted(merkle.nodes_for(r for each in ranges.values() for r in each))
    found: dict[merkle.Node, bytes] = {}
    for start in range(0, len(nodes), _NODES_PER_QUERY):
        found.update(await _fetch(conn, nodes[start : start + _NODES_PER_QUERY]))
    return {index: merkle.range_hashes(each, found) for index, each in ranges.items()}


async def consistency_proof(conn: Executor, *, old_size: int, new_size: int) -> list[bytes]:
    """The consistency proof between two tree sizes (RFC 9162 §2.1.4.1)."""
    await _check_size(conn, new_size)
    if old_size > new_size:
        raise InvalidTreeRequest(f"from ({old_size}) must not be larger than to ({new_size})")
    return await _proof(conn, merkle.consistency_ranges(old_size, new_size))


async def extends(
    conn: Executor, *, old_size: int, old_root: bytes, new_size: int, new_root: bytes
) -> bool:
    """Whether the stored tree of ``new_size`` leaves, of root ``new_root``, extends the
    tree of ``old_size`` leaves that had ``old_root`` (RFC 9162 §2.1.4.2, with the proof
    made of stored nodes); ``old_size`` ≤ ``new_size``."""
    ranges = merkle.consistency_ranges(old_size, new_size)
    return merkle.verify_consistency(
        old_size=old_size,
        new_size=new_size,
        old_root=old_root,
        new_root=new_root,
        proof=await _hashes(conn, ranges),
    )


async def _check_size(conn: Executor, tree_size: int) -> None:
    size = await current_size(conn)
    if tree_size > size:
        raise InvalidTreeRequest(f"the log has {size} entries, not {tree_size}")


async def _proof(conn: Executor, ranges: list[merkle.Range]) -> list[bytes]:
    try:
        return await _hashes(conn, ranges)
    except AuditLogDamaged as damage:
        log.error("a proof was refused, the audit log is damaged: %s", damage.detail)
        raise


async def _hashes(conn: Executor, ranges: list[merkle.Range]) -> list[bytes]:
    found = await _fetch(conn, merkle.nodes_for(ranges))
    return merkle.range_hashes(ranges, found)


async def _fetch(conn: Executor, nodes: Collection[merkle.Node]) -> Mapping[merkle.Node, bytes]:
    """The stored hashes of ``nodes``, every one of them, or AuditLogDamaged."""
    return complete(nodes, await repository.fetch_nodes(conn, nodes))


def complete(
    nodes: Collection[merkle.Node], found: Mapping[merkle.Node, bytes]
) -> Mapping[merkle.Node, bytes]:
    """``found``, the stored hashes of ``nodes``, if it has every one; else AuditLogDamaged."""
    missing = sorted(set(nodes) - found.keys())
    if missing:
        names = ", ".join(describe(node) for node in missing[:5])
        raise AuditLogDamaged(
            f"the stored log lacks {names} (onceonly audit check-nodes finds all damage)"
        )
    return found


def describe(node: merkle.Node) -> str:
    """``entry 12``, or ``the subtree (3, 1) of entries 8-15``."""
    level, index = node
    if level == 0:
        return f"entry {index}"
    return f"the subtree {node} of entries {index << level}-{((index + 1) << level) - 1}"


async def frontier_at(conn: AsyncConnection, size: int) -> merkle.Frontier:
    """The right edge of the tree of ``size`` leaves, read in one query."""
    return merkle.Frontier.of(size, await _fetch(conn, merkle.perfect_subtrees(0, size)))


def node_rows(frontier: merkle.Frontier, leaf_hashes: list[bytes]) -> list[dict[str, Any]]:
    """Append leaf hashes to ``frontier``; the rows of the nodes they complete."""
    return [
        {"level": level, "idx": idx, "hash": value}
        for level, idx, value in completed_nodes(frontier, leaf_hashes)
    ]


def completed_nodes(
    frontier: merkle.Frontier, leaf_hashes: Iterable[bytes]
) -> list[tuple[int, int, bytes]]:
    """Append leaf hashes to ``frontier``; the nodes they complete, as (level, idx, hash)."""
    return [
        (level, idx, value)
        for leaf_hash in leaf_hashes
        for (level, idx), value in frontier.append(leaf_hash)
    ]


CHECK_PAGE = 128
"""Entries read at a time by :func:`check_nodes`, and about as many nodes fetched in one
query (SQLite refuses expressions more than 1,000 deep, a long OR chain among them)."""


@dataclass(frozen=True)
class NodeCheck:
    """What :func:`check_nodes` went through, and how many problems it reported."""

    entries: int
    nodes: int
    damaged: int


async def check_nodes(
    sessions: async_sessionmaker[AsyncSession],
    *,
    report: Callable[[str], None],
    page: int = CHECK_PAGE,
) -> NodeCheck:
    """Recompute every stored subtree hash from the leaves (RFC 9162 §2.1.1), in log
    order, and ``report`` one line for each entry that is missing or whose ``leaf_hash``
    is not the hash of its leaf, and for each node that is missing or holds another hash
    than its entries give. Roots and proofs are made of these nodes: a bad one makes the
    hub serve proofs that fail, though the leaves still add up to the signed root.
    """
    async with sessions() as session:
        size = await current_size(session)
    recomputed, nodes, damaged = _Recomputed(), 0, 0
    for start in range(0, size, page):
        async with sessions() as session:
            rows = await repository.get_entries(session, start=start, limit=page)
            problems, expected = recomputed.add(rows, end=min(start + page, size))
            stored = await repository.fetch_nodes(session, expected.keys())
        problems += _node_problems(expected, stored)
        for line in problems:
            report(line)
        nodes, damaged = nodes + len(expected), damaged + len(problems)
    return NodeCheck(entries=size, nodes=nodes, damaged=damaged)


@dataclass
class _Recomputed:
    """The tree recomputed from the leaves read so far, and the entries found missing."""

    frontier: merkle.Frontier = field(default_factory=merkle.Frontier)
    missing: list[int] = field(default_factory=list)

    def add(
        self, rows: Sequence[AuditEntry], *, end: int
    ) -> tuple[list[str], dict[merkle.Node, bytes]]:
        """Append the leaves up to ``end`` from ``rows``: the entries' problems, and the
        nodes they complete that can be recomputed (none over a missing entry)."""
        problems, completed = [], {}
        found = {row.idx: row for row in rows}
        for index in range(self.frontier.size, end):
            row = found.get(index)
            if row is None:
                problems.append(f"entry {index}: missing")
                self.missing.append(index)
            elif merkle.hash_leaf(row.leaf) != row.leaf_hash:
                problems.append(f"entry {index}: its leaf_hash is not the hash of its leaf")
            elif unlike := leaves.unlike_leaf(row.leaf, row):
                problems.append(
                    f"entry {index}: its index column(s) {', '.join(unlike)} not what its leaf"
                    " says (the filters, the pages and the report read them)"
                )
            # The stored leaf hash, which the nodes were made of; a placeholder if missing.
            leaf_hash = bytes(merkle.HASH_SIZE) if row is None else row.leaf_hash
            for node, value in self.frontier.append(leaf_hash):
                if not self._over_missing(node):
                    completed[node] = value
        return problems, completed

    def _over_missing(self, node: merkle.Node) -> bool:
        level, index = node
        first = bisect.bisect_left(self.missing, index << level)
        return first < len(self.missing) and self.missing[first] < (index + 1) << level


def _node_problems(
    expected: Mapping[merkle.Node, bytes], stored: Mapping[merkle.Node, bytes]
) -> list[str]:
    problems = []
    for node, value in expected.items():
        if node not in stored:
            problems.append(f"{describe(node)}: missing")
        elif stored[node] != value:
            problems.append(f"{describe(node)}: its stored hash is not the one its entries give")
    return problems
