"""C2SP signed notes (https://c2sp.org/signed-note) and tlog checkpoints
(https://c2sp.org/tlog-checkpoint), Ed25519 only, without I/O.

A signed note is a text ending in a newline, a blank line, and signature lines
``— <key name> <base64(4-byte key ID ‖ 64-byte signature)>``; the signature covers
the text including its final newline. The Ed25519 key ID is the first 4 bytes of
SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key); the verifier key is
``<name>+<8 hex key ID>+<base64(0x01 ‖ public key)>``. A checkpoint is a note whose
text is ``<origin>\\n<tree size>\\n<base64 root hash>\\n``. Shared with
``onceonly audit verify``, which must not depend on the hub.
"""

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519 = 0x01
"""The signed-note signature type of Ed25519 (C2SP signed-note, "Signature types")."""
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
MAX_NOTE_BYTES = 1 << 20
MAX_SIGNATURES = 100
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")


class NoteError(ValueError):
    """A note, verifier key or checkpoint that is malformed or not validly signed."""


def check_key_name(name: str) -> str:
    """A key name is non-empty, without Unicode spaces or ``+`` (signed-note, "Signatures")."""
    if not name or "+" in name or any(ch.isspace() for ch in name):
        raise NoteError(f"invalid key name {name!r}: empty, or contains a space or '+'")
    return name


def key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key)[:4] (signed-note, "Signatures")."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Verifier:
    """A pinned Ed25519 note verifier: key name, key ID and public key."""

    name: str
    key_id: bytes
    public_key: bytes

    @classmethod
    def of(cls, name: str, public_key: bytes) -> "Verifier":
        return cls(check_key_name(name), key_id(name, public_key), public_key)

    @classmethod
    def parse(cls, text: str) -> "Verifier":
        """Read ``<name>+<hex key ID>+<base64(0x01 ‖ key)>``, checking that the ID matches."""
        name, _, rest = text.strip().partition("+")
        hex_id, _, encoded = rest.partition("+")
        try:
            raw = base64.b64decode(encoded, validate=True)
            expected_id = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError) as error:
            raise NoteError("the verifier key is not <name>+<hex id>+<base64 key>") from error
        if len(hex_id) != 8 or len(raw) != 33 or raw[0] != ED25519:
            raise NoteError("the verifier key is not an Ed25519 signed-note verifier key")
        verifier = cls.of(name, raw[1:])
        if verifier.key_id != expected_id:
            raise NoteError("the verifier key's ID does not match its name and public key")
        return verifier

    def __str__(self) -> str:
        encoded = base64.b64encode(bytes([ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def accepts(self, text: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, text)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """Signs note texts with an Ed25519 key under a key name."""

    name: str
    private_key: Ed25519PrivateKey

    @property
    def verifier(self) -> Verifier:
        return Verifier.of(self.name, raw_public_key(self.private_key.public_key()))

    def sign(self, text: str) -> str:
        """The signed note: text, blank line, one signature line."""
        check_text(text)
        signature = self.private_key.sign(text.encode())
        encoded = base64.b64encode(self.verifier.key_id + signature).decode()
        return f"{text}\n{SIGNATURE_PREFIX}{self.name} {encoded}\n"


def check_text(text: str) -> None:
    """A note text ends in a newline and has no control characters but newlines."""
    if not text.endswith("\n") or any(ch < " " and ch != "\n" for ch in text):
        raise NoteError("a note text must end in a newline and contain no control characters")


def open_note(note: str, verifier: Verifier) -> str:
    """The text of ``note`` if ``verifier``'s key signed it; NoteError otherwise.

    Signature lines from other keys are ignored; the one from the pinned key (same
    name and key ID) must verify (signed-note, "Verifying").
    """
    if len(note.encode()) > MAX_NOTE_BYTES:
        raise NoteError("the note is too large")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise NoteError("the note has no signature block")
    text, lines = note[: split + 1], note[split + 2 : -1].split("\n")
    check_text(text)
    if len(lines) > MAX_SIGNATURES:
        raise NoteError("the note has too many signatures")
    for line in lines:
        name, signature = _signature_line(line)
        if name == verifier.name and signature[:4] == verifier.key_id:
            if not verifier.accepts(text.encode(), signature[4:]):
                raise NoteError(f"the signature by {name} does not verify: the note was altered")
            return text
    raise NoteError(f"the note is not signed by the pinned key {verifier.name}")


def _signature_line(line: str) -> tuple[str, bytes]:
    if not line.startswith(SIGNATURE_PREFIX):
        raise NoteError("malformed signature line")
    name, _, encoded = line[len(SIGNATURE_PREFIX) :].rpartition(" ")
    try:
        signature = base64.b64decode(encoded, validate=True)
    except binascii.Error as error:
        raise NoteError("malformed signature line") from error
    if not name or len(signature) < 5:
        raise NoteError("malformed signature line")
    return name, signature


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint body: origin, tree size, root hash (C2SP tlog-checkpoint)."""

    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse(cls, text: str) -> "Checkpoint":
        """Read a checkpoint body; extension lines after the root are allowed and ignored."""
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or not lines[0]:
            raise NoteError("a checkpoint has an origin, a size and a root hash, one per line")
        if not _SIZE.fullmatch(lines[1]):
            raise NoteError(f"invalid checkpoint tree size {lines[1]!r}")
        try:
            root = base64.b64decode(lines[2], validate=True)
        except binascii.Error as error:
            raise NoteError("the checkpoint root hash is not base64") from error
        if len(root) != 32:
            raise NoteError("the checkpoint root hash is not a SHA-256 hash")
        return cls(lines[0], int(lines[1]), root)


def open_checkpoint(note: str, verifier: Verifier) -> Checkpoint:
    """Verify a signed checkpoint and read it; its origin must be the key's name."""
    checkpoint = Checkpoint.parse(open_note(note, verifier))
    if checkpoint.origin != verifier.name:
        raise NoteError(f"the checkpoint is for log {checkpoint.origin!r}, not {verifier.name!r}")
    return checkpoint
