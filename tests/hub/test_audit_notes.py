"""C2SP signed notes and checkpoints: the Go reference vector, and an independent check.

The vector is the example of golang.org/x/mod/sumdb/note (note_test.go): Ed25519
is deterministic, so signing its text with its key must give its note byte for byte.
"""

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hub.audit import merkle
from hub.audit.notes import (
    Checkpoint,
    NoteError,
    Signer,
    Verifier,
    open_checkpoint,
    open_note,
)

GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY_DATA = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"  # 0x01 ‖ Ed25519 seed
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def _go_signer() -> Signer:
    seed = base64.b64decode(GO_SKEY_DATA)[1:]
    return Signer("PeterNeumann", Ed25519PrivateKey.from_private_bytes(seed))


def test_signing_reproduces_the_go_reference_note_byte_for_byte() -> None:
    signer = _go_signer()
    assert signer.sign(GO_TEXT) == GO_NOTE
    assert str(signer.verifier) == GO_VKEY


def test_the_go_reference_note_opens_with_its_verifier_key() -> None:
    assert open_note(GO_NOTE, Verifier.parse(GO_VKEY)) == GO_TEXT


def test_an_altered_text_is_refused() -> None:
    with pytest.raises(NoteError, match="does not verify"):
        open_note(GO_NOTE.replace("cryptography", "cryptographY"), Verifier.parse(GO_VKEY))


def test_a_note_signed_by_another_key_is_refused() -> None:
    other = Signer("PeterNeumann", Ed25519PrivateKey.generate())
    with pytest.raises(NoteError, match="not signed by the pinned key"):
        open_note(other.sign(GO_TEXT), Verifier.parse(GO_VKEY))


@pytest.mark.parametrize(
    "vkey",
    [
        GO_VKEY.replace("c74f20a3", "c74f20a4"),  # key ID does not match
        GO_VKEY.replace("+ARpc", "+AhpC"),  # not Ed25519 / other key
        "PeterNeumann+c74f20a3",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "",
    ],
)
def test_malformed_verifier_keys_are_refused(vkey: str) -> None:
    with pytest.raises(NoteError):
        Verifier.parse(vkey)


def test_checkpoint_signature_verifies_independently_of_the_notes_module() -> None:
    """Parse by hand, compute the key ID with hashlib and verify with cryptography."""
    key = Ed25519PrivateKey.generate()
    signer = Signer("hub.example/audit", key)
    root = merkle.root_of([merkle.hash_leaf(b"a"), merkle.hash_leaf(b"b")])
    note = signer.sign(Checkpoint("hub.example/audit", 2, root).text())

    text, _, signature_line = note.partition("\n\n")
    assert text == f"hub.example/audit\n2\n{base64.b64encode(root).decode()}"
    dash, name, blob = signature_line.rstrip("\n").split(" ")
    assert (dash, name) == ("\u2014", "hub.example/audit")
    raw = base64.b64decode(blob)
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    expected_id = hashlib.sha256(b"hub.example/audit\n\x01" + public).digest()[:4]
    assert raw[:4] == expected_id
    assert len(raw) == 4 + 64
    key.public_key().verify(raw[4:], (text + "\n").encode())  # raises if invalid


def test_checkpoint_round_trip_and_origin_check() -> None:
    signer = Signer("hub.example/audit", Ed25519PrivateKey.generate())
    checkpoint = Checkpoint("hub.example/audit", 7, hashlib.sha256(b"x").digest())
    assert open_checkpoint(signer.sign(checkpoint.text()), signer.verifier) == checkpoint
    foreign = Checkpoint("elsewhere.example/log", 7, checkpoint.root)
    with pytest.raises(NoteError, match="is for log"):
        open_checkpoint(signer.sign(foreign.text()), signer.verifier)


@pytest.mark.parametrize(
    "text",
    [
        "origin\n007\nAAAA\n",
        "origin\n-1\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "origin\n1\nnot base64!\n",
        "origin\n1\n" + base64.b64encode(bytes(31)).decode() + "\n",
        "origin\n1\n",
    ],
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse(text)
