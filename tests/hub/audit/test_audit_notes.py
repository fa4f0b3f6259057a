"""C2SP signed notes and checkpoints: the Go reference vector, and an independent check.

The vector is the example of golang.org/x/mod/sumdb/note (note_test.go): Ed25519
is deterministic, so signing its text with its key must give its note byte for byte.
"""

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from onceonly.hub.audit import merkle
from onceonly.hub.audit.notes import (
    Checkpoint,
    NoteError,
    Signer,
    Verifier,
    decode_base64,
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


GO_SIGNATURE = GO_NOTE.rsplit("\n\n", 1)[1]  # "— PeterNeumann x08go…=\n"
GO_BLOB = GO_SIGNATURE.split(" ")[2].rstrip("\n")
OTHER = Signer("EnochRoot", Ed25519PrivateKey.generate())
OTHER_SIGNATURE = OTHER.sign(GO_TEXT).rsplit("\n\n", 1)[1]


def _then(line: str) -> str:
    """The valid Go note with one more line after its valid signature."""
    return GO_NOTE + line + "\n"


DASH = "\u2014 "


@pytest.mark.parametrize(
    "note",
    [
        pytest.param(_then(DASH + "PeterNeumann"), id="line without signature"),
        pytest.param(_then(DASH + "PeterNeumann "), id="empty signature"),
        pytest.param(_then("not a signature line"), id="no em dash"),
        pytest.param(_then("- PeterNeumann " + GO_BLOB), id="hyphen, not em dash"),
        pytest.param(_then("\u2014PeterNeumann " + GO_BLOB), id="no space after dash"),
        pytest.param(_then(DASH + "PeterNeumann !!!!"), id="not base64"),
        pytest.param(_then(DASH + "PeterNeumann AAAA"), id="shorter than 5 bytes"),
        pytest.param(_then(DASH + "PeterNeumann AAAAAAA"), id="unpadded base64"),
        pytest.param(_then(DASH + "PeterNeumann AAAAAA=="), id="4 bytes"),
        pytest.param(_then(DASH + "Peter+Neumann " + GO_BLOB), id="plus in name"),
        pytest.param(_then(DASH + "Peter\u00a0Neumann " + GO_BLOB), id="nbsp in name"),
        pytest.param(_then(DASH + "PeterNeumann  " + GO_BLOB), id="two spaces"),
        pytest.param(_then(DASH + f"PeterNeumann {GO_BLOB} x"), id="trailing field"),
        pytest.param(_then(DASH + f"PeterNeumann {GO_BLOB}\r"), id="carriage return"),
        pytest.param(_then(DASH + "EnochRoot " + GO_BLOB + "=="), id="bad padding"),
        pytest.param(_then(DASH + " " + GO_BLOB), id="empty name"),
        pytest.param(GO_NOTE + OTHER_SIGNATURE * 100, id="101 signatures"),
        pytest.param(GO_NOTE.replace("problem,\n", "problem,\t\n"), id="tab in the text"),
        pytest.param(GO_NOTE.rstrip("\n"), id="no final newline"),
        pytest.param(GO_TEXT + "\n", id="no signature lines"),
        pytest.param(GO_TEXT, id="no blank line"),
        pytest.param(GO_NOTE + "\u2014 x\ud800 " + GO_BLOB + "\n", id="lone surrogate"),
    ],
)
def test_a_malformed_note_is_refused_whatever_valid_signature_it_carries(note: str) -> None:
    """Go's note.Open refuses each of these; so does the verifier."""
    with pytest.raises(NoteError, match="malformed"):
        open_note(note, Verifier.parse(GO_VKEY))


@pytest.mark.parametrize(
    "note",
    [
        pytest.param(GO_NOTE.encode() + b"\xff\n", id="bytes that are not UTF-8"),
        pytest.param(GO_NOTE.encode() + b"\x00\n", id="NUL"),
    ],
)
def test_a_malformed_note_in_bytes_is_refused(note: bytes) -> None:
    with pytest.raises(NoteError, match="malformed"):
        open_note(note, Verifier.parse(GO_VKEY))


def test_an_empty_line_among_the_signatures_hides_those_before_it() -> None:
    """The signatures start after the last blank line (Go: bytes.LastIndex): the
    pinned key's line before an empty line is text, and the note is not its."""
    note = GO_NOTE + "\n" + OTHER_SIGNATURE
    with pytest.raises(NoteError, match="not signed by the pinned key"):
        open_note(note, Verifier.parse(GO_VKEY))


@pytest.mark.parametrize(
    "note",
    [
        pytest.param(GO_NOTE + OTHER_SIGNATURE, id="another key after"),
        pytest.param(GO_TEXT + "\n" + OTHER_SIGNATURE + GO_SIGNATURE, id="another key before"),
        pytest.param(GO_NOTE + OTHER_SIGNATURE * 99, id="100 signatures"),
        pytest.param(GO_NOTE + GO_SIGNATURE, id="the same signature twice"),
        pytest.param(GO_NOTE.encode(), id="bytes"),
    ],
)
def test_well_formed_notes_open_as_in_go(note: str | bytes) -> None:
    assert open_note(note, Verifier.parse(GO_VKEY)) == GO_TEXT


@pytest.mark.parametrize("where", ["before", "after"])
def test_every_signature_of_the_pinned_key_must_verify(where: str) -> None:
    """signed-note: a known key's signature MUST be verified, and one that fails SHOULD
    reject the whole note. Go's reader drops a known key's lines after its first
    unverified, so it opens a note with a bad repeat after the good line; this one
    refuses it (an independent verifier's review)."""
    altered = GO_SIGNATURE.replace("x08go/ZJ", "x08go/ZK")
    lines = altered + GO_SIGNATURE if where == "before" else GO_SIGNATURE + altered
    with pytest.raises(NoteError, match="does not verify"):
        open_note(GO_TEXT + "\n" + lines, Verifier.parse(GO_VKEY))


@pytest.mark.parametrize("encoded", ["AAAA=", "AAAA====", "AA==AA==", "AAA", " AAAA", "AAAA\n"])
def test_base64_is_read_as_strictly_as_go(encoded: str) -> None:
    with pytest.raises(NoteError):
        decode_base64(encoded)


def _independently_signed_by(note: str, name: str, public: bytes) -> bool:
    """C2SP signed-note read by hand: the text up to the last blank line, then any
    signature line of the key (name, key ID) that verifies with cryptography."""
    text, _, block = note.rpartition("\n\n")
    key_id = hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]
    for line in block.rstrip("\n").split("\n"):
        dash, line_name, blob = line.split(" ")
        raw = base64.b64decode(blob)
        if dash == "\u2014" and line_name == name and raw[:4] == key_id:
            Ed25519PublicKey.from_public_bytes(public).verify(raw[4:], (text + "\n").encode())
            return True
    return False


def test_a_cosigned_checkpoint_opens_under_either_key() -> None:
    """A rotated checkpoint key (decision 0091) signs the latest checkpoint too: the note
    keeps its text and first signature, and verifies pinned to the old key or the new."""
    old, new = (Signer("hub.example/audit", Ed25519PrivateKey.generate()) for _ in range(2))
    checkpoint = Checkpoint("hub.example/audit", 7, hashlib.sha256(b"x").digest())
    first = old.sign(checkpoint.text())
    both = new.cosign(first, text=checkpoint.text())
    assert both.startswith(first)
    assert both.count("\n\u2014 ") == 2
    for signer in (old, new):
        assert open_checkpoint(both, signer.verifier) == checkpoint
        public = signer.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        assert _independently_signed_by(both, "hub.example/audit", public)
    assert new.cosign(both, text=checkpoint.text()) == both  # once per key
    assert old.cosign(both, text=checkpoint.text()) == both


def test_the_go_reference_note_still_opens_when_cosigned() -> None:
    other = Signer("PeterNeumann", Ed25519PrivateKey.generate())
    cosigned = other.cosign(GO_NOTE, text=GO_TEXT)
    assert open_note(cosigned, Verifier.parse(GO_VKEY)) == GO_TEXT
    assert open_note(cosigned, other.verifier) == GO_TEXT


def test_a_key_cosigns_only_the_text_it_would_sign() -> None:
    signer = Signer("hub.example/audit", Ed25519PrivateKey.generate())
    checkpoint = Checkpoint("hub.example/audit", 7, hashlib.sha256(b"x").digest())
    note = _go_signer().sign(checkpoint.text())
    other = Checkpoint("hub.example/audit", 8, checkpoint.root)
    with pytest.raises(NoteError, match="not the one this key would sign"):
        signer.cosign(note, text=other.text())
    with pytest.raises(NoteError, match="malformed note"):
        signer.cosign(checkpoint.text(), text=checkpoint.text())
    full = (
        checkpoint.text()
        + "\n"
        + "".join(
            Signer(f"k{n}", Ed25519PrivateKey.generate()).sign(checkpoint.text()).split("\n\n")[1]
            for n in range(100)
        )
    )
    with pytest.raises(NoteError, match="already has 100 signatures"):
        signer.cosign(full, text=checkpoint.text())
