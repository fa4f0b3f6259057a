"""Merkle tree math of RFC 6962 §2.1 / RFC 9162 §2.1, without I/O.

The hub stores the hash of every *perfect* subtree, node ``(level, index)``
covering leaves ``[index * 2**level, (index + 1) * 2**level)``. Every subtree
that RFC 9162 names in a root, an inclusion proof (§2.1.3.1) or a consistency
proof (§2.1.4.1) covers a range whose start is aligned to the next power of two
of its size, so it splits into O(log n) perfect subtrees, largest first, and its
hash is their right fold: ``MTH(D[a:b]) = H(p0, H(p1, ... pk))``.

This module says *which* ranges and nodes are needed and how to combine them;
the repository fetches the nodes, the verifier checks the proofs (§2.1.3.2,
§2.1.4.2). It knows nothing of the hub and is shared with ``onceonly audit verify``.
"""

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256() (RFC 9162 §2.1.1)."""

Node = tuple[int, int]
"""A perfect subtree: ``(level, index)``, covering ``2**level`` leaves from ``index << level``."""

Range = tuple[int, int]
"""Leaves ``[start, end)``."""


def hash_leaf(leaf: bytes) -> bytes:
    """The leaf hash: SHA-256(0x00 ‖ leaf) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """The interior node hash: SHA-256(0x01 ‖ left ‖ right) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(size: int) -> int:
    """k, the largest power of two smaller than ``size`` (> 1) (RFC 9162 §2.1.1)."""
    return 1 << ((size - 1).bit_length() - 1)


def perfect_subtrees(start: int, end: int) -> list[Node]:
    """The perfect subtrees that make up ``[start, end)``, left to right (largest first
    for the aligned ranges RFC 9162 uses)."""
    nodes: list[Node] = []
    while start < end:
        level = (start & -start).bit_length() - 1 if start else (end - start).bit_length() - 1
        while (1 << level) > end - start:
            level -= 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """The hash of a range from its perfect subtrees' hashes, largest first (right fold)."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = hash_children(left, result)
    return result


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The subtrees of PATH(index, D[0:size]) in proof order (RFC 9162 §2.1.3.1)."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is not in a tree of size {size}")
    ranges: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + split_point(end - start)
        if index < mid:
            ranges.append((mid, end))
            end = mid
        else:
            ranges.append((start, mid))
            start = mid
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[Range]:
    """The subtrees of PROOF(old_size, D[0:new_size]) in proof order (RFC 9162 §2.1.4.1).

    Empty when ``old_size`` is 0 or equals ``new_size``: nothing needs proving.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    ranges: list[Range] = []
    start, end, whole = 0, new_size, True  # ``whole``: SUBPROOF's b flag
    while old_size != end:
        mid = start + split_point(end - start)
        if old_size <= mid:
            ranges.append((mid, end))
            end = mid
        else:
            ranges.append((start, mid))
            start, whole = mid, False
    if not whole:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def nodes_for(ranges: Iterable[Range]) -> set[Node]:
    """Every stored node needed to hash ``ranges``: what one query should fetch."""
    return {node for start, end in ranges for node in perfect_subtrees(start, end)}


def range_hashes(ranges: Iterable[Range], nodes: Mapping[Node, bytes]) -> list[bytes]:
    """The hash of each range from fetched nodes (KeyError if one is missing)."""
    return [fold([nodes[n] for n in perfect_subtrees(start, end)]) for start, end in ranges]


@dataclass
class Frontier:
    """The right edge of a tree: the perfect subtrees of its size, largest first.

    Appending a leaf hash returns the nodes it completes, so a writer computes the
    new stored nodes from the frontier alone, without reading the tree.
    """

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    @classmethod
    def of(cls, size: int, nodes: Mapping[Node, bytes]) -> "Frontier":
        return cls(size, [nodes[node] for node in perfect_subtrees(0, size)])

    def append(self, leaf_hash: bytes) -> list[tuple[Node, bytes]]:
        """Add one leaf; the completed nodes of level ≥ 1, bottom-up."""
        index, current, level = self.size, leaf_hash, 0
        completed: list[tuple[Node, bytes]] = []
        while index >> level & 1:
            current = hash_children(self.hashes.pop(), current)
            level += 1
            completed.append(((level, index >> level), current))
        self.hashes.append(current)
        self.size += 1
        return completed

    def root(self) -> bytes:
        return fold(self.hashes)


def root_of(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH of a whole list of leaf hashes, in O(log n) memory."""
    frontier = Frontier()
    for leaf_hash in leaf_hashes:
        frontier.append(leaf_hash)
    return frontier.root()


def verify_inclusion(
    *, leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` place ``leaf_hash`` at ``index`` under ``root``?"""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = hash_children(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = hash_children(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    *, old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: is the tree of ``new_root`` an extension of ``old_root``'s?"""
    if old_size > new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:  # every tree extends the empty one, whose root is known
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root starts the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = hash_children(c, fr), hash_children(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = hash_children(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root
