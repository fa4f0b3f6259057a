"""C2SP signed notes (https://c2sp.org/signed-note) and tlog checkpoints
(https://c2sp.org/tlog-checkpoint), Ed25519 only, without I/O.

A signed note is a text ending in a newline, a blank line, and signature lines
``— <key name> <base64(4-byte key ID ‖ 64-byte signature)>``; the signature covers
the text including its final newline. The Ed25519 key ID is the first 4 bytes of
SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key); the verifier key is
``<name>+<8 hex key ID>+<base64(0x01 ‖ public key)>``. A checkpoint is a note whose
text is ``<origin>\\n<tree size>\\n<base64 root hash>\\n``. Shared with
``onceonly audit verify``, which must not depend on the hub.

Notes are read as strictly as Go's reference, ``golang.org/x/mod/sumdb/note.Open``:
a note that Go refuses is refused here too, whatever signature it also carries.
"""

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519 = 0x01
"""The signed-note signature type of Ed25519 (C2SP signed-note, "Signature types")."""
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
MAX_NOTE_BYTES = 1 << 20
MAX_SIGNATURES = 100
"""Go's note.Open refuses more ("avoid spending forever parsing a note")."""
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")
# Padded standard base64 (RFC 4648 §4), as Go's base64.StdEncoding decodes it: Python's
# decoder also takes "AAAA=" and "AAAA====", which Go refuses.
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
# Unicode White_Space, what Go's unicode.IsSpace matches: a key name contains none.
_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
)


class NoteError(ValueError):
    """A note, verifier key or checkpoint that is malformed or not validly signed."""


def check_key_name(name: str) -> str:
    """A key name is non-empty UTF-8 without Unicode spaces or ``+`` (signed-note,
    "Signatures"; Go's ``isValidName``)."""
    if not name or "+" in name or not _SPACES.isdisjoint(name) or not _is_utf8(name):
        raise NoteError(f"invalid key name {name!r}: empty, or contains a space or '+'")
    return name


def _is_utf8(text: str) -> bool:
    """False for a str that no UTF-8 bytes decode to (lone surrogates)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def decode_base64(encoded: str) -> bytes:
    """Padded standard base64, strictly (RFC 4648 §4; Go's ``base64.StdEncoding``)."""
    if not _BASE64.fullmatch(encoded):
        raise NoteError("not padded standard base64")
    return base64.b64decode(encoded)


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
            raw = decode_base64(encoded)
            expected_id = bytes.fromhex(hex_id)
        except ValueError as error:
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
    """Signs note texts with an Ed25519 key under a key name. ``retired``: the verifier
    keys of the keys this one replaced (decision 0091), which signed earlier notes."""

    name: str
    private_key: Ed25519PrivateKey
    retired: tuple[Verifier, ...] = ()

    @property
    def verifier(self) -> Verifier:
        return Verifier.of(self.name, raw_public_key(self.private_key.public_key()))

    def sign(self, text: str) -> str:
        """The signed note: text, blank line, one signature line."""
        check_text(text)
        signature = self.private_key.sign(text.encode())
        return f"{text}\n{self._line(signature)}"

    def cosign(self, note: str, *, text: str) -> str:
        """``note`` with this key's signature of its text added, when its text is
        ``text`` (what this signer would sign itself); unchanged when it already carries
        a line of this key. The text and the other signatures stay as they are, so the
        note still verifies under each key that signed it (signed-note: a note may carry
        several signatures over one text). NoteError for a malformed note, another text,
        or one that has all the signatures a note may have."""
        check_text(text)
        found, signatures = read_note(note)
        if found != text:
            raise NoteError("the note's text is not the one this key would sign")
        if _signatures_of(self.verifier, signatures):
            return note
        if len(signatures) >= MAX_SIGNATURES:
            raise NoteError(f"the note already has {MAX_SIGNATURES} signatures")
        return note + self._line(self.private_key.sign(text.encode()))

    def _line(self, signature: bytes) -> str:
        encoded = base64.b64encode(self.verifier.key_id + signature).decode()
        return f"{SIGNATURE_PREFIX}{self.name} {encoded}\n"


def check_text(text: str) -> None:
    """A note text ends in a newline and has no control characters but newlines."""
    if not text.endswith("\n") or any(ch < " " and ch != "\n" for ch in text):
        raise NoteError("a note text must end in a newline and contain no control characters")


def open_note(note: str | bytes, verifier: Verifier) -> str:
    """The text of ``note`` if ``verifier``'s key signed it; NoteError otherwise.

    As Go's ``note.Open``: the note is UTF-8 without control characters but newlines,
    ends in a newline, and after its last blank line holds 1 to 100 signature lines,
    every one of them well-formed. Lines of other keys are ignored. Every line of the
    pinned key (same name and key ID) is verified, and one that fails refuses the note
    (signed-note, "Signatures": a known key's signature MUST be verified, and one that
    fails SHOULD reject the whole note). Go's reader skips a known key's lines after its
    first; this one is stricter there.
    """
    text, signatures = read_note(note)
    pinned = _signatures_of(verifier, signatures)
    if not pinned:
        raise NoteError(f"the note is not signed by the pinned key {verifier.name}")
    signed = text.encode()
    if not all(verifier.accepts(signed, signature) for signature in pinned):
        raise NoteError(f"a signature by {verifier.name} does not verify: the note was altered")
    return text


def signed_by(note: str | bytes, verifiers: Sequence[Verifier]) -> Verifier | None:
    """The first of ``verifiers`` whose key validly signed ``note`` (as
    :func:`open_note` checks it), or None: a malformed note, or one none of them signed."""
    for verifier in verifiers:
        try:
            open_note(note, verifier)
        except NoteError:
            continue
        return verifier
    return None


def read_note(note: str | bytes) -> tuple[str, list[tuple[str, bytes]]]:
    """The text of a well-formed note and its signature lines (key name, key ID ‖
    signature), none of them verified; NoteError for a note Go's ``note.Open`` refuses."""
    raw = _note_bytes(note)
    if len(raw) > MAX_NOTE_BYTES:
        raise NoteError("the note is too large")
    whole = _note_text(raw)
    split = whole.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed note: no blank line before the signatures")
    text, block = whole[: split + 1], whole[split + 2 :]
    if not block.endswith("\n"):
        raise NoteError("malformed note: no signature lines, or no newline after the last")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"malformed note: more than {MAX_SIGNATURES} signatures")
    return text, [_signature_line(number, line) for number, line in enumerate(lines, 1)]


def _signatures_of(verifier: Verifier, signatures: list[tuple[str, bytes]]) -> list[bytes]:
    """The signatures (without key ID) of the lines of ``verifier``'s key: same name and ID."""
    return [
        signature[4:]
        for name, signature in signatures
        if name == verifier.name and signature[:4] == verifier.key_id
    ]


def _note_bytes(note: str | bytes) -> bytes:
    if isinstance(note, bytes):
        return note
    if not _is_utf8(note):
        raise NoteError("malformed note: not UTF-8")
    return note.encode()


def _note_text(raw: bytes) -> str:
    try:
        whole = raw.decode()
    except UnicodeDecodeError as error:
        raise NoteError("malformed note: not UTF-8") from error
    if any(ch < " " and ch != "\n" for ch in whole):
        raise NoteError("malformed note: a control character other than newline")
    return whole


def _signature_line(number: int, line: str) -> tuple[str, bytes]:
    """``— <key name> <base64>``: the name ends at the first space (Go's ``chop``), the
    rest is padded base64 of at least 5 bytes (a key ID and a signature)."""
    name, _, encoded = line.removeprefix(SIGNATURE_PREFIX).partition(" ")
    try:
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError("it does not start with an em dash and a space")
        check_key_name(name)
        signature = decode_base64(encoded)
        if len(signature) < 5:
            raise NoteError("its signature is shorter than a key ID and a signature")
    except NoteError as error:
        raise NoteError(f"malformed note: signature line {number}: {error}") from error
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
            root = decode_base64(lines[2])
        except NoteError as error:
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
