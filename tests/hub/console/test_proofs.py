"""The entry page's verdict (console.proofs) as tables: a proof that holds, and every way
it must not: a proof against another root, a changed leaf, a checkpoint signed by
another key or altered, an entry the checkpoint does not cover yet."""

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from onceonly.hub.audit import merkle
from onceonly.hub.audit.inclusion import SignedCheckpoint, Verdict, needs_proof, opened, verdict
from onceonly.hub.audit.notes import Checkpoint, Signer

ORIGIN = "hub.example.gov/audit"
SIGNER = Signer(ORIGIN, Ed25519PrivateKey.generate())
LEAVES = [f"entry {i}".encode() for i in range(7)]
HASHES = [merkle.hash_leaf(leaf) for leaf in LEAVES]
AT = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)


def _proof(index: int, size: int) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH from the leaves themselves (no hub)."""
    return [
        merkle.root_of(HASHES[start:end]) for start, end in merkle.inclusion_ranges(index, size)
    ]


def _signed(size: int, root: bytes | None = None, signer: Signer = SIGNER) -> SignedCheckpoint:
    note = signer.sign(Checkpoint(ORIGIN, size, root or merkle.root_of(HASHES[:size])).text())
    return opened(note, verifier=SIGNER.verifier, signed_at=AT)


@pytest.mark.parametrize("index", range(7))
def test_a_proof_to_the_signed_root_is_included(index: int) -> None:
    signed = _signed(7)
    assert needs_proof(index, signed)
    found = verdict(
        index=index,
        leaf=LEAVES[index],
        leaf_hash=HASHES[index],
        signed=signed,
        proof=_proof(index, 7),
    )
    assert found is Verdict.INCLUDED


def test_a_proof_against_another_root_fails() -> None:
    wrong_root = merkle.root_of([*HASHES[:6], merkle.hash_leaf(b"another entry")])
    signed = _signed(7, root=wrong_root)  # signed, but not the root of these leaves
    found = verdict(index=2, leaf=LEAVES[2], leaf_hash=HASHES[2], signed=signed, proof=_proof(2, 7))
    assert found is Verdict.PROOF_FAILS


def test_a_tampered_proof_fails() -> None:
    proof = _proof(3, 7)
    proof[1] = bytes(32)
    found = verdict(index=3, leaf=LEAVES[3], leaf_hash=HASHES[3], signed=_signed(7), proof=proof)
    assert found is Verdict.PROOF_FAILS


def test_a_proof_of_another_index_fails() -> None:
    found = verdict(
        index=3, leaf=LEAVES[3], leaf_hash=HASHES[3], signed=_signed(7), proof=_proof(4, 7)
    )
    assert found is Verdict.PROOF_FAILS


def test_a_changed_leaf_fails_before_any_proof() -> None:
    found = verdict(
        index=1,
        leaf=b"entry 1, changed",
        leaf_hash=HASHES[1],
        signed=_signed(7),
        proof=_proof(1, 7),
    )
    assert found is Verdict.LEAF_ALTERED


def test_a_checkpoint_signed_by_another_key_is_invalid() -> None:
    other = Signer(ORIGIN, Ed25519PrivateKey.generate())
    signed = _signed(7, signer=other)
    assert signed.checkpoint is None
    assert signed.problem
    assert not needs_proof(0, signed)
    found = verdict(index=0, leaf=LEAVES[0], leaf_hash=HASHES[0], signed=signed, proof=[])
    assert found is Verdict.CHECKPOINT_INVALID


def test_an_altered_checkpoint_is_invalid() -> None:
    note = SIGNER.sign(Checkpoint(ORIGIN, 7, merkle.root_of(HASHES)).text()).replace(
        "\n7\n", "\n8\n"
    )
    assert opened(note, verifier=SIGNER.verifier, signed_at=AT).checkpoint is None


@pytest.mark.parametrize(("index", "signed"), [(5, _signed(5)), (6, _signed(5)), (0, None)])
def test_an_entry_no_checkpoint_covers_is_not_yet_signed(
    index: int, signed: SignedCheckpoint | None
) -> None:
    assert not needs_proof(index, signed)
    found = verdict(
        index=index, leaf=LEAVES[index], leaf_hash=HASHES[index], signed=signed, proof=[]
    )
    assert found is Verdict.NOT_YET_SIGNED
