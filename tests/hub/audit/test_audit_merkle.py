"""The pure Merkle math against the independent RFC 6962 reference (tests/hub/rfc6962_reference.py).

Nodes live in a dict here, filled by ``Frontier.append`` exactly as the writer fills
``audit_nodes``; test_audit_tree.py repeats the comparison on the stored tree.
"""

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onceonly.hub.audit import merkle

from tests.hub import rfc6962_reference as ref

MAX_SIZE = 1000
LEAVES = [f"leaf {n}".encode() for n in range(MAX_SIZE)]
LEAF_HASHES = [hashlib.sha256(b"\x00" + leaf).digest() for leaf in LEAVES]


def _store() -> dict[merkle.Node, bytes]:
    nodes: dict[merkle.Node, bytes] = {}
    frontier = merkle.Frontier()
    for index, leaf_hash in enumerate(LEAF_HASHES):
        nodes[(0, index)] = leaf_hash
        nodes.update(frontier.append(leaf_hash))
    return nodes


NODES = _store()


@st.composite
def size_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX_SIZE))
    return size, draw(st.integers(0, size - 1))


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    new = draw(st.integers(2, MAX_SIZE))
    return draw(st.integers(1, new - 1)), new


def _root(size: int) -> bytes:
    return merkle.fold([NODES[node] for node in merkle.perfect_subtrees(0, size)])


def test_root_from_stored_nodes_equals_mth_for_every_size_up_to_1000() -> None:
    for size in range(MAX_SIZE + 1):
        assert _root(size) == ref.mth(LEAVES[:size]), size


def test_frontier_root_equals_mth_after_every_append() -> None:
    frontier = merkle.Frontier()
    for size, leaf_hash in enumerate(LEAF_HASHES[:300], start=1):
        frontier.append(leaf_hash)
        assert frontier.root() == ref.mth(LEAVES[:size])


def test_empty_tree_root_is_the_hash_of_nothing() -> None:
    assert merkle.root_of([]) == merkle.EMPTY_ROOT == hashlib.sha256(b"").digest()


@given(size_and_index())
def test_inclusion_proof_equals_the_reference_path(case: tuple[int, int]) -> None:
    size, index = case
    proof = merkle.range_hashes(merkle.inclusion_ranges(index, size), NODES)
    assert proof == ref.path(index, LEAVES[:size])
    root = ref.mth(LEAVES[:size])
    assert ref.verify_inclusion(index, size, LEAF_HASHES[index], proof, root)
    assert merkle.verify_inclusion(
        leaf_hash=LEAF_HASHES[index], index=index, size=size, proof=proof, root=root
    )


@given(two_sizes())
def test_consistency_proof_equals_the_reference_proof(case: tuple[int, int]) -> None:
    old, new = case
    proof = merkle.range_hashes(merkle.consistency_ranges(old, new), NODES)
    assert proof == ref.proof(old, LEAVES[:new])
    old_root, new_root = ref.mth(LEAVES[:old]), ref.mth(LEAVES[:new])
    assert ref.verify_consistency(old, new, old_root, new_root, proof)
    assert merkle.verify_consistency(
        old_size=old, new_size=new, old_root=old_root, new_root=new_root, proof=proof
    )


@given(two_sizes(), st.data())
def test_consistency_verifier_rejects_any_altered_hash(
    case: tuple[int, int], data: st.DataObject
) -> None:
    old, new = case
    proof = ref.proof(old, LEAVES[:new])
    position = data.draw(st.integers(0, len(proof) - 1))
    proof[position] = hashlib.sha256(proof[position]).digest()
    assert not merkle.verify_consistency(
        old_size=old,
        new_size=new,
        old_root=ref.mth(LEAVES[:old]),
        new_root=ref.mth(LEAVES[:new]),
        proof=proof,
    )


@given(size_and_index())
def test_inclusion_verifier_rejects_a_wrong_index_or_leaf(case: tuple[int, int]) -> None:
    size, index = case
    proof, root = ref.path(index, LEAVES[:size]), ref.mth(LEAVES[:size])
    other = hashlib.sha256(b"another leaf").digest()
    assert not merkle.verify_inclusion(
        leaf_hash=other, index=index, size=size, proof=proof, root=root
    )
    if size > 1:
        assert not merkle.verify_inclusion(
            leaf_hash=LEAF_HASHES[index],
            index=(index + 1) % size,
            size=size,
            proof=proof,
            root=root,
        )


def test_trivial_consistency_needs_no_proof() -> None:
    root = ref.mth(LEAVES[:5])
    assert merkle.consistency_ranges(0, 5) == merkle.consistency_ranges(5, 5) == []
    assert merkle.verify_consistency(old_size=5, new_size=5, old_root=root, new_root=root, proof=[])
    assert not merkle.verify_consistency(
        old_size=5, new_size=5, old_root=root, new_root=ref.mth(LEAVES[:4]), proof=[]
    )


def test_the_empty_tree_extends_only_with_its_own_root() -> None:
    """Every tree extends the empty one, whose root is SHA-256 of nothing (RFC 9162
    §2.1.1): a signed size 0 with another root is no empty tree (it was taken)."""
    root = ref.mth(LEAVES[:5])
    empty = hashlib.sha256(b"").digest()
    assert merkle.verify_consistency(
        old_size=0, new_size=5, old_root=empty, new_root=root, proof=[]
    )
    assert not merkle.verify_consistency(
        old_size=0, new_size=5, old_root=root, new_root=root, proof=[]
    )
    assert not merkle.verify_consistency(
        old_size=0, new_size=5, old_root=empty, new_root=root, proof=[root]
    )


@pytest.mark.parametrize(("index", "size"), [(0, 0), (5, 5), (-1, 3)])
def test_no_inclusion_ranges_outside_the_tree(index: int, size: int) -> None:
    with pytest.raises(ValueError, match="not in a tree"):
        merkle.inclusion_ranges(index, size)
