"""Whether an entry is in the signed log, decided without I/O: the one verdict that the
auditors' entry page and the citizen's page show (onceonly.hub.audit.service reads
what it needs: :func:`~onceonly.hub.audit.service.latest_signed`,
:func:`~onceonly.hub.audit.service.proof_under`).

A verdict is given only after checking it as an outside verifier would
(docs/audit.md, "Running the check"), with the same code as ``onceonly audit verify``:
the checkpoint's signature with the verifier key (:func:`notes.open_checkpoint`), the
entry's leaf against its leaf hash (RFC 9162 §2.1.1), and the inclusion proof the hub
computed against the signed root (RFC 9162 §2.1.3.2, :func:`merkle.verify_inclusion`).
The hub's own answers are not trusted to be right: a damaged stored tree shows here.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from onceonly.hub.audit import merkle
from onceonly.hub.audit.notes import Checkpoint, NoteError, Verifier, open_checkpoint


class Verdict(StrEnum):
    INCLUDED = "included"  # the proof leads from the leaf hash to the signed root
    NOT_YET_SIGNED = "not-yet-signed"  # no signed checkpoint covers the entry yet
    LEAF_ALTERED = "leaf-altered"  # the entry's bytes do not hash to its leaf hash
    PROOF_FAILS = "proof-fails"  # the proof does not lead to the signed root
    CHECKPOINT_INVALID = "checkpoint-invalid"  # the checkpoint's signature does not hold


@dataclass(frozen=True)
class SignedCheckpoint:
    """A stored checkpoint, opened with the verifier key (``checkpoint`` is None when
    its note does not verify, and ``problem`` says why)."""

    checkpoint: Checkpoint | None
    signed_at: datetime
    problem: str = ""


def opened(note: str, *, verifier: Verifier, signed_at: datetime) -> SignedCheckpoint:
    """The checkpoint ``note`` says, if ``verifier``'s key signed it for its log."""
    try:
        return SignedCheckpoint(open_checkpoint(note, verifier), signed_at)
    except NoteError as error:
        return SignedCheckpoint(None, signed_at, str(error))


def needs_proof(index: int, signed: SignedCheckpoint | None) -> bool:
    """Whether a proof of entry ``index`` against ``signed`` is worth asking the tree for."""
    return signed is not None and signed.checkpoint is not None and index < signed.checkpoint.size


def verdict(
    *,
    index: int,
    leaf: bytes,
    leaf_hash: bytes,
    signed: SignedCheckpoint | None,
    proof: Sequence[bytes],
) -> Verdict:
    """What the entry's page may say about entry ``index`` (its exact ``leaf`` bytes and
    stored ``leaf_hash``) and the latest stored checkpoint (None: none yet)."""
    if merkle.hash_leaf(leaf) != leaf_hash:
        return Verdict.LEAF_ALTERED
    if signed is None:
        return Verdict.NOT_YET_SIGNED
    if signed.checkpoint is None:
        return Verdict.CHECKPOINT_INVALID
    if index >= signed.checkpoint.size:
        return Verdict.NOT_YET_SIGNED
    checkpoint = signed.checkpoint
    if not merkle.verify_inclusion(
        leaf_hash=leaf_hash, index=index, size=checkpoint.size, proof=proof, root=checkpoint.root
    ):
        return Verdict.PROOF_FAILS
    return Verdict.INCLUDED
