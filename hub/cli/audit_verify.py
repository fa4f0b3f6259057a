"""``onceonly audit verify``: check a hub's audit log from outside, with its public API only.

1. Fetch the latest checkpoint; check its signature with the pinned verifier key
   and that its origin is the key's log (C2SP signed-note, tlog-checkpoint).
2. Compare it with the last checkpoint this auditor verified (the state file) and
   with checkpoints other auditors saw (``--compare``): same size and another
   root, a smaller size, or a failed consistency proof (RFC 9162 §2.1.4) is a fork
   or a shrink, i.e. the log's history was changed. These earlier checkpoints may be
   signed by the pinned key or by a key it replaced (``previous_keys``: the operators
   rotated the checkpoint key, decision 0091, or renamed the log, decision 0089); the
   latest must be signed by the pinned key. A ``--compare`` checkpoint signed only by a
   previous key counts only up to the rotation's boundary the operators published with
   the new key (``--previous-key KEY@SIZE``, printed by ``keys rotate-checkpoint``):
   past it, a leaked old key could sign anything, so it is no evidence against the hub
   (exit 2); without ``@SIZE`` it is not counted either (exit 2, asking for the size).
   The boundary is never read from the audited hub, which could withdraw it by
   rewriting its history. A previous key whose public key is the pinned key's is the
   hub's own key under the log's former name (decision 0089): no bound, what it signs
   is the hub's word. The auditor's own state file (``--state`` or the default one) is
   not bounded: this command took its checkpoint from the hub itself, and the file is
   the auditor's own to keep. Without ``--state``, the state files of the previous
   keys' names are read too: a log renamed keeps its history.
3. With ``--full``, download every leaf hash and recompute the root (RFC 9162
   §2.1.1): a changed, removed, reordered or inserted entry shows. Then check the
   proofs the hub serves against the signed root and the downloaded leaf hashes
   (RFC 9162 §2.1.3.2, §2.1.4.2): the inclusion proof of every entry and the
   consistency proof from every size, or of a random sample of them on a larger log,
   which the hub cannot know in advance. With an auditor's credential (``token``),
   also check every entry's content against its leaf hash, and the subject the hub
   indexes an entry by against the entry's ``subject`` or ``subject_commitment``
   (decision 0069 and its follow-up).

Exit status: 0 verified, 1 verification failed (evidence of tampering, or a hub that
cannot prove what it signed: a proof it refuses with 4xx or 5xx), 2 the verification
could not be done (usage, transport errors such as a refused connection or a timeout,
other unexpected answers).
"""

import base64
import binascii
import json
import os
import random
import re
import ssl
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from onceonly.hub.audit import leaves, merkle
from onceonly.hub.audit.notes import Checkpoint, NoteError, Verifier, open_checkpoint
from onceonly.hub.cli.progress import Progress
from onceonly.hub.kit.clock import aware
from onceonly.hub.kit.untrusted_json import load_json

EXIT_OK, EXIT_FAILED, EXIT_CANNOT = 0, 1, 2
_MAX_DEPTH = 64  # the hub's answers are read as untrusted: a hostile hub cannot crash this
PAGE = 1000
PROOF_SAMPLE = 256
"""``--full`` checks the proofs of every entry and size up to this many, else of this
many chosen at random (the hub cannot tell which it will be asked for)."""

Say = Callable[[str], None]


class VerificationFailed(Exception):
    """The log is not what its signed checkpoints say: exit 1."""


class CannotVerify(Exception):
    """The verification could not be carried out: exit 2."""


class CredentialRefused(CannotVerify):
    """The hub refuses the credential sent (``status``: 401 or 403)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PreviousKey:
    """A ``--previous-key``: the verifier, the rotation's boundary (``KEY@SIZE``: the
    largest checkpoint it signed as the hub's key, as the operators published it; None
    when not given), and whether it is the pinned key's own public key under another
    name (a renamed log, decision 0089: the hub still holds it)."""

    verifier: Verifier
    until: int | None
    hubs_own: bool


@dataclass(frozen=True)
class Seen:
    """A verified signed checkpoint, where it came from, and the previous key that
    signed it (None: the pinned key did). ``own``: the auditor's state file, a
    checkpoint this command took from the hub itself."""

    checkpoint: Checkpoint
    note: str
    source: str
    previous: PreviousKey | None = None
    own: bool = False

    @property
    def signed_with(self) -> str:
        if self.previous is None:
            return "the pinned key"
        if self.previous.hubs_own:
            return (
                f"the hub's own key under the log's former name ({self.previous.verifier}:"
                " the pinned key's private key, which only the hub holds)"
            )
        return f"the previous key {self.previous.verifier}"


@dataclass
class State:
    """What the state file remembers: the newest checkpoint this auditor verified."""

    origin: str
    tree_size: int
    root: str
    checkpoint: str
    verified_at: str


def default_state_path(origin: str) -> Path:
    """``$XDG_STATE_HOME/onceonly/audit-<origin>.json`` (``~/.local/state`` by default)."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "onceonly" / f"audit-{re.sub(r'[^A-Za-z0-9.]+', '-', origin)}.json"


def run(
    *,
    hub: str,
    key: str,
    previous_keys: list[str] | None = None,
    state_path: Path | None = None,
    compare: list[Path] | None = None,
    full: bool = False,
    token: str | None = None,
    say: Say = print,
    tls: ssl.SSLContext | None = None,
) -> int:
    """Verify and report; the exit status for the command line. ``token``: an auditor's
    credential, with which ``full`` also checks each entry's content; ``tls``: whom to
    trust and what to present (default: the usual certificate authorities);
    ``previous_keys``: verifier keys the pinned one replaced, which may have signed the
    earlier checkpoints (the state file's, ``compare``'s)."""
    try:
        pinned, previous = _verifiers(key, previous_keys or [])
        _verify(hub, pinned, previous, state_path, compare or [], full, say, token, tls)
    except VerificationFailed as failure:
        print(f"VERIFICATION FAILED: {failure}", file=sys.stderr)
        return EXIT_FAILED
    except CannotVerify as problem:
        print(f"cannot verify: {problem}", file=sys.stderr)
        return EXIT_CANNOT
    return EXIT_OK


def _verifiers(key: str, previous_keys: list[str]) -> tuple[Verifier, list[PreviousKey]]:
    """The pinned verifier, and the previous ones (``KEY`` or ``KEY@SIZE``)."""
    try:
        pinned = Verifier.parse(key)
    except NoteError as error:
        raise CannotVerify(f"--key: {error}") from error
    return pinned, [_previous_key(text, pinned) for text in previous_keys]


def _previous_key(text: str, pinned: Verifier) -> PreviousKey:
    """``KEY`` or ``KEY@SIZE``: a verifier key's base64 holds no ``@``, so one after its
    last ``+`` starts the size."""
    until = None
    head, plus, tail = text.strip().rpartition("+")
    if plus and "@" in tail:
        tail, _, size = tail.partition("@")
        if not size.isascii() or not size.isdigit() or len(size) > 19:
            raise CannotVerify(
                f"--previous-key: {size!r} after '@' is not a tree size (KEY@SIZE: the size"
                " the operators published with the new key)"
            )
        until = int(size)
    try:
        verifier = Verifier.parse(head + plus + tail)
    except NoteError as error:
        raise CannotVerify(f"--previous-key: {error}") from error
    return PreviousKey(verifier, until, hubs_own=verifier.public_key == pinned.public_key)


def _verify(
    hub: str,
    verifier: Verifier,
    previous: list[PreviousKey],
    state_path: Path | None,
    compare: list[Path],
    full: bool,
    say: Say,
    token: str | None,
    tls: ssl.SSLContext | None,
) -> None:
    verifiers = [verifier, *(p.verifier for p in previous)]
    states = _state_files(state_path, verifiers)
    state_path = state_path or default_state_path(verifier.name)
    with _Hub(hub, token=token, tls=tls) as client:
        current = _signed(client.text("/v1/audit/checkpoint"), verifier, source=f"hub {hub}")
        say(f"checkpoint of {verifier.name}: {current.checkpoint.size} entries, signature good")
        for earlier in _earlier(states, compare, verifier, previous):
            _check_before_rotation(earlier)
            _check_consistent(client, earlier, current)
            by = "" if earlier.previous is None else f" (signed by {earlier.signed_with})"
            say(f"consistent with {earlier.source}{by} ({earlier.checkpoint.size} entries)")
        if full:
            _check_full(client, current.checkpoint, contents=token is not None, say=say)
    _save(state_path, current)
    say(f"OK: the log is consistent with every checkpoint seen; state in {state_path}")


def _state_files(state_path: Path | None, verifiers: list[Verifier]) -> list[Path]:
    """The state files to read: ``--state``; else the pinned name's default one and
    those of the previous keys' names (a renamed log: decision 0089), which exist.
    Warns when the pinned name has none yet but another has: without the old one read,
    a history changed at the rename would pass."""
    if state_path is not None:
        return [state_path] if state_path.exists() else []
    own = default_state_path(verifiers[0].name)
    others = {default_state_path(v.name) for v in verifiers[1:]} - {own}
    found = [path for path in [own, *sorted(others)] if path.exists()]
    if not own.exists():
        _warn_new_state(own, found)
    return found


def _warn_new_state(own: Path, found: list[Path]) -> None:
    if found:
        names = ", ".join(str(path) for path in found)
        print(
            f"warning: no state file for this key's log name yet ({own}): continuing from"
            f" the state of the name the previous key was given ({names})",
            file=sys.stderr,
        )
        return
    if own.parent.is_dir() and any(own.parent.glob("audit-*.json")):
        print(
            f"warning: no state file for this key's log name yet ({own}), but there are"
            f" others in {own.parent}: if the operators renamed the log or replaced its"
            " key, run again with --previous-key <the old verifier key>, or a history"
            " changed at that moment is not seen",
            file=sys.stderr,
        )


def _signed(note: str, verifier: Verifier, *, source: str) -> Seen:
    try:
        return Seen(open_checkpoint(note, verifier), note, source)
    except NoteError as error:
        raise VerificationFailed(
            f"the checkpoint from {source} is not validly signed by the pinned key: {error}"
        ) from error


_MAX_STATE_BYTES = 1 << 20
"""A state file or a checkpoint is a few hundred bytes; what is larger is refused unread."""


def _earlier(
    states: list[Path], compare: list[Path], pinned: Verifier, previous: list[PreviousKey]
) -> Iterator[Seen]:
    """The state files' checkpoints, then every ``--compare`` file's (notes or state
    files)."""
    for path in [*states, *compare]:
        try:  # the file's bytes as UTF-8, line ends kept: a note is read as sent (no CR)
            with path.open("rb") as file:
                raw = file.read(_MAX_STATE_BYTES + 1)
            if len(raw) > _MAX_STATE_BYTES:  # /dev/zero filled memory (an operator's review)
                raise CannotVerify(
                    f"{path} is larger than {_MAX_STATE_BYTES} bytes: not a state file"
                    " or a checkpoint"
                )
            text = raw.decode("utf-8")
        except OSError as error:
            raise CannotVerify(f"cannot read {path}: {error}") from error
        except UnicodeDecodeError as error:
            raise CannotVerify(f"{path} is not UTF-8 text") from error
        if text.lstrip().startswith("{"):
            try:
                text = str(load_json(text, max_depth=_MAX_DEPTH).get("checkpoint", ""))
            except (ValueError, AttributeError) as error:
                raise CannotVerify(f"{path} is not a state file or a checkpoint") from error
        yield _opened(text, pinned, previous, path, own=path in states)


def _opened(
    text: str, pinned: Verifier, previous: list[PreviousKey], path: Path, *, own: bool
) -> Seen:
    """The checkpoint in ``path``, signed by the pinned key or else by a previous one."""
    source = f"the checkpoint in {path}"
    for key in [None, *previous]:
        try:
            checkpoint = open_checkpoint(text, pinned if key is None else key.verifier)
        except NoteError:
            continue
        return Seen(checkpoint, text, source, previous=key, own=own)
    keys = "the pinned key" if not previous else "the pinned key or a previous key"
    raise CannotVerify(f"{path} holds no checkpoint signed by {keys}")


def _check_before_rotation(earlier: Seen) -> None:
    """A ``--compare`` checkpoint signed only by a retired key counts up to the
    rotation's boundary the operators published with the new key (``KEY@SIZE``), never
    past it: a retired key may have leaked, and whoever holds it may sign anything past
    the rotation. The boundary is the auditor's, not the audited hub's (whose history
    a rewrite could withdraw). No bound for the auditor's own state file, nor for the
    hub's own key under the log's former name."""
    key = earlier.previous
    if earlier.own or key is None or key.hubs_own:
        return
    size = earlier.checkpoint.size
    if key.until is None:
        raise CannotVerify(
            f"{earlier.source} ({size} entries) is signed only by a retired key"
            f" ({key.verifier}), and no rotation boundary is given for it: run again with"
            f" --previous-key {key.verifier}@SIZE, SIZE the boundary the operators published"
            " with the new key (onceonly keys rotate-checkpoint prints it). Without it, this"
            " checkpoint is not evidence against the hub (whoever holds the retired key may"
            " sign anything past the rotation)"
        )
    if size > key.until:
        raise CannotVerify(
            f"{earlier.source} ({size} entries) is signed only by a retired key past its"
            f" rotation ({key.verifier}, which signed the hub's checkpoints up to"
            f" {key.until} entries): not evidence against the hub (whoever holds the retired"
            " key may sign anything past the rotation)"
        )


def _check_consistent(client: "_Hub", earlier: Seen, current: Seen) -> None:
    """RFC 9162 §2.1.4: the earlier tree must be a prefix of the current one."""
    old, new = earlier.checkpoint, current.checkpoint
    if old.size > new.size:
        raise VerificationFailed(
            f"SHRINK: the log now has {new.size} entries, but {earlier.source} has"
            f" {old.size}, signed with {earlier.signed_with} (the hub's with"
            f" {current.signed_with}): entries were removed.\n" + _evidence(earlier, current)
        )
    if old.size == new.size and old.root != new.root:
        raise VerificationFailed(
            f"FORK: two different logs of {new.size} entries are signed, the hub's with"
            f" {current.signed_with} and {earlier.source} with {earlier.signed_with}:"
            " history was rewritten.\n" + _evidence(earlier, current)
        )
    if old.size == 0:  # every tree extends the empty one: no proof to ask for
        if old.root != merkle.EMPTY_ROOT:
            raise VerificationFailed(
                f"the checkpoint in {earlier.source} signs an empty log with a root that is"
                " not the empty tree's (RFC 9162 §2.1.1)"
            )
        return
    if old.size == new.size:
        return
    proof = client.proof(f"/v1/audit/proof/consistency?from={old.size}&to={new.size}")
    if not merkle.verify_consistency(
        old_size=old.size, new_size=new.size, old_root=old.root, new_root=new.root, proof=proof
    ):
        raise VerificationFailed(
            f"FORK: the log of {new.size} entries does not extend {earlier.source} "
            f"({old.size} entries, signed with {earlier.signed_with}): earlier entries"
            " were changed, removed or reordered.\n" + _evidence(earlier, current)
        )


def _evidence(earlier: Seen, current: Seen) -> str:
    return (
        f"Keep both signed checkpoints as evidence:\n--- {earlier.source}\n{earlier.note}"
        f"--- {current.source}\n{current.note}"
    )


def _check_full(client: "_Hub", checkpoint: Checkpoint, *, contents: bool, say: Say) -> None:
    size = checkpoint.size
    sample = proof_sample(size)
    refused = contents and not client.reads_contents()
    contents = contents and not refused
    downloaded = _check_entries(client, checkpoint, contents=contents, sample=sample)
    say(f"all {size} leaf hashes recomputed to the signed root")
    if contents:
        say(f"all {size} entries' contents match their leaf hashes")
    elif refused:
        say(
            "entry contents not checked: the hub does not show them to the account signed in"
            " (403), so leaf hashes only, as signed out; sign in as an auditor to check them too"
        )
    else:
        say("entry contents not checked: sign in as an auditor to check them too")
    _check_proofs(client, checkpoint, downloaded)
    which = "every entry and size" if len(sample) == size else f"{len(sample)} random entries"
    say(f"the hub's inclusion and consistency proofs of {which} lead to the signed root")


def proof_sample(size: int) -> list[int]:
    """The entries whose inclusion proofs (and the sizes just after them, whose
    consistency proofs) ``--full`` checks: all on a small log, else a random sample
    from the operating system's generator, which the hub cannot predict."""
    if size <= PROOF_SAMPLE:
        return list(range(size))
    return sorted(random.SystemRandom().sample(range(size), PROOF_SAMPLE))


@dataclass(frozen=True)
class Downloaded:
    """What ``--full`` kept of the leaves to check proofs with: the leaf hashes of the
    sampled entries, and the roots it computed of the trees that end with them."""

    leaf_hashes: dict[int, bytes]
    roots: dict[int, bytes]


def _check_entries(
    client: "_Hub", checkpoint: Checkpoint, *, contents: bool, sample: list[int]
) -> Downloaded:
    """Download leaf hashes 0..size-1 and recompute the signed root; with ``contents``
    (an auditor's credential), check every entry's leaf against its hash too."""
    frontier, kept = merkle.Frontier(), Downloaded({}, {})
    wanted = set(sample)
    with Progress("leaf hashes downloaded", total=checkpoint.size) as progress:
        while frontier.size < checkpoint.size:
            _add_page(client, checkpoint, frontier, kept, wanted=wanted, contents=contents)
            progress.advance(frontier.size - progress.done)
    if frontier.root() != checkpoint.root:
        raise VerificationFailed(
            f"the {checkpoint.size} entries do not add up to the signed root: an entry was "
            "changed, removed, reordered or inserted after it was signed"
        )
    return kept


def _add_page(
    client: "_Hub",
    checkpoint: Checkpoint,
    frontier: merkle.Frontier,
    kept: Downloaded,
    *,
    wanted: set[int],
    contents: bool,
) -> None:
    """The next page of leaf hashes, checked and added to ``frontier``."""
    path = f"/v1/audit/leaves?start={frontier.size}&limit={PAGE}"
    entries = client.json(path).get("entries") or []
    if not isinstance(entries, list):
        raise CannotVerify(f"the hub's answer to {path} is malformed (entries is not a list)")
    if not entries:
        raise VerificationFailed(
            f"entry {frontier.size} is missing: the log has fewer entries than its "
            f"signed checkpoint ({checkpoint.size})"
        )
    for item in entries[: checkpoint.size - frontier.size]:
        index = frontier.size
        leaf_hash = _checked_leaf_hash(item, expected=index, contents=contents)
        frontier.append(leaf_hash)
        if index in wanted:
            kept.leaf_hashes[index], kept.roots[index + 1] = leaf_hash, frontier.root()


def _check_proofs(client: "_Hub", checkpoint: Checkpoint, downloaded: Downloaded) -> None:
    """The hub's proofs against the signed root (RFC 9162 §2.1.3.2, §2.1.4.2): a proof
    that fails, while the leaves add up to the root, means a damaged stored tree."""
    total = len(downloaded.leaf_hashes) + len(downloaded.roots)
    with Progress("proofs checked", total=total) as progress:
        _check_inclusion_proofs(client, checkpoint, downloaded, progress)
        _check_consistency_proofs(client, checkpoint, downloaded, progress)


def _check_inclusion_proofs(
    client: "_Hub", checkpoint: Checkpoint, downloaded: Downloaded, progress: Progress
) -> None:
    size, root = checkpoint.size, checkpoint.root
    for index, leaf_hash in downloaded.leaf_hashes.items():
        proof = client.proof(f"/v1/audit/proof/inclusion?index={index}&tree_size={size}")
        if not merkle.verify_inclusion(
            leaf_hash=leaf_hash, index=index, size=size, proof=proof, root=root
        ):
            raise VerificationFailed(
                f"entry {index}: the hub's inclusion proof does not lead to the signed root"
                f" of {size} entries, though the entries do: the hub's stored tree is damaged"
            )
        progress.advance()


def _check_consistency_proofs(
    client: "_Hub", checkpoint: Checkpoint, downloaded: Downloaded, progress: Progress
) -> None:
    size, root = checkpoint.size, checkpoint.root
    for old_size, old_root in downloaded.roots.items():
        progress.advance()
        if old_size == size:
            continue
        proof = client.proof(f"/v1/audit/proof/consistency?from={old_size}&to={size}")
        if not merkle.verify_consistency(
            old_size=old_size, new_size=size, old_root=old_root, new_root=root, proof=proof
        ):
            raise VerificationFailed(
                f"the hub's consistency proof from {old_size} to {size} entries does not"
                " hold, though the entries add up to the signed root: the hub's stored tree"
                " is damaged"
            )


def _checked_leaf_hash(item: object, *, expected: int, contents: bool) -> bytes:
    if not isinstance(item, dict):
        raise VerificationFailed(f"entry {expected} is malformed")
    index = item.get("index")
    if index != expected:
        raise VerificationFailed(f"entry {expected} is missing (the next entry is {index})")
    try:
        stated = base64.b64decode(str(item["leaf_hash"]), validate=True)
    except (KeyError, binascii.Error) as error:
        raise VerificationFailed(f"entry {index} is malformed") from error
    if len(stated) != merkle.HASH_SIZE:
        raise VerificationFailed(f"entry {index}: its leaf hash is not {merkle.HASH_SIZE} bytes")
    if contents:
        _check_content(item, index=expected, stated=stated)
    return stated


def _check_content(item: dict[str, Any], *, index: int, stated: bytes) -> None:
    if "leaf" not in item:
        raise CannotVerify(
            f"the hub shows no content of entry {index} to this credential: sign in as an"
            " auditor (onceonly login) to check contents"
        )
    try:
        leaf = base64.b64decode(str(item["leaf"]), validate=True)
        decoded = load_json(leaf, max_depth=_MAX_DEPTH)
    except (binascii.Error, ValueError) as error:
        raise VerificationFailed(f"entry {index} is malformed") from error
    if merkle.hash_leaf(leaf) != stated:
        raise VerificationFailed(f"entry {index}: its content does not match its leaf hash")
    if decoded != item.get("entry"):
        raise VerificationFailed(f"entry {index}: the decoded entry is not its leaf")
    if isinstance(decoded, dict):
        _check_indexed_subject(item, decoded, index=index)
        _check_indexed_columns(item, decoded, index=index)


def _check_indexed_subject(item: dict[str, Any], decoded: dict[str, Any], *, index: int) -> None:
    """The pseudonym the hub's index keeps for the entry, which the auditors' search by
    subject and the citizen's page read, must be the one its leaf commits to
    (``subject_commitment``, shown as ``committed_subject``: decision 0069) or names
    (``subject``, shown as ``indexed_subject``), and none when the leaf has neither: an
    index moved to another person hides the entry from a search for its person, and
    from that person's page, and shows it for someone it is not about."""
    if "subject_commitment" in decoded:
        committed = item.get("committed_subject")
        if not isinstance(committed, str) or not leaves.commits_to(decoded, committed):
            raise VerificationFailed(
                f"entry {index}: the subject the hub indexes it by is not the one its leaf"
                " commits to (subject_commitment)"
            )
        return
    named, indexed = decoded.get("subject"), item.get("indexed_subject")
    if named == indexed:
        return
    if named is None:
        raise VerificationFailed(
            f"entry {index}: the hub indexes it by a subject its leaf does not name: a search"
            " by subject finds it for someone it is not about"
        )
    raise VerificationFailed(
        f"entry {index}: the subject the hub indexes it by (indexed_subject) is not the one"
        " its leaf names (subject): a search by subject, and the person's page, miss it"
        + ("" if indexed is not None else " (a hub older than this command shows none: update it)")
    )


def _check_indexed_columns(item: dict[str, Any], decoded: dict[str, Any], *, index: int) -> None:
    """The other columns of the hub's index (``indexed``: time, action, outcome,
    department, client, item) must be the leaf's: the auditors' filters, the
    departments' pages and the reports read them, so a changed one hides the entry from
    a search that should find it, or from the department it names."""
    indexed = item.get("indexed")
    if not isinstance(indexed, dict):
        raise VerificationFailed(
            f"entry {index}: the hub shows no index columns (indexed) for it: a hub older"
            " than this command shows none: update it"
        )
    for name in leaves.INDEXED_MEMBERS:
        if indexed.get(name) != decoded.get(name):
            raise VerificationFailed(
                f"entry {index}: the hub indexes it by {name} {_shown(indexed.get(name))},"
                f" its leaf says {_shown(decoded.get(name))}: the auditors' filters and the"
                " departments' pages read the index"
            )
    if _instant(indexed.get("time")) != _instant(decoded.get("time")):
        raise VerificationFailed(
            f"entry {index}: the hub indexes it at time {_shown(indexed.get('time'))}, its leaf"
            f" says {_shown(decoded.get('time'))}: the auditors' filters by time read the index"
        )


def _instant(value: object) -> datetime | None:
    """An RFC 3339 time as an instant (one without an offset read as UTC), else None."""
    if not isinstance(value, str):
        return None
    try:
        return aware(datetime.fromisoformat(value))
    except ValueError:
        return None


def _shown(value: object) -> str:
    """A value for a message: quoted, escaped, at most 80 characters."""
    return repr(value)[:80]


def _save(path: Path, seen: Seen) -> None:
    checkpoint = seen.checkpoint
    state = State(
        origin=checkpoint.origin,
        tree_size=checkpoint.size,
        root=base64.b64encode(checkpoint.root).decode(),
        checkpoint=seen.note,
        verified_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(state), indent=2) + "\n")
        temporary.replace(path)
    except OSError as error:
        raise CannotVerify(f"verified, but cannot write the state file {path}: {error}") from error


class _Hub:
    """The hub's public audit API; transport faults and odd answers are CannotVerify."""

    def __init__(self, url: str, *, token: str | None, tls: ssl.SSLContext | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(
            base_url=url.rstrip("/"),
            timeout=30.0,
            headers=headers,
            verify=tls if tls is not None else True,
        )

    def __enter__(self) -> "_Hub":
        return self

    def __exit__(self, *_: object) -> None:
        self._client.close()

    def _get(self, path: str) -> httpx.Response:
        try:
            response = self._client.get(path)
        except httpx.HTTPError as error:
            raise CannotVerify(f"cannot reach the hub ({path}): {error}") from error
        if "/proof/" in path and (response.status_code == 400 or response.status_code >= 500):
            # Every proof asked for is of sizes the hub signed: it owes the answer.
            raise VerificationFailed(
                f"the hub cannot prove {path} for sizes it signed: it answered"
                f" {response.status_code} {response.text[:300]}"
            )
        if response.status_code in (401, 403):
            raise CredentialRefused(
                f"the hub refuses this credential ({response.status_code} to {path}): sign in"
                " again as an auditor, or verify without one (leaf hashes only)",
                status=response.status_code,
            )
        if response.status_code != 200:
            raise CannotVerify(f"the hub answered {response.status_code} to {path}")
        return response

    def reads_contents(self) -> bool:
        """Whether the hub shows entries' content to the credential. One it refuses
        (403: a person signed in who is not an auditor) is dropped: what ``--full``
        reads after is public, as for a verifier signed out (docs/audit.md). A 401 (a
        session expired or unknown) still stops the run: signing in again fixes it."""
        try:
            self._get("/v1/audit/leaves?start=0&limit=1")
        except CredentialRefused as refused:
            if refused.status != 403:
                raise
            del self._client.headers["Authorization"]
            return False
        return True

    def text(self, path: str) -> str:
        return self._get(path).text

    def json(self, path: str) -> dict[str, Any]:
        try:
            body = load_json(self._get(path).content, max_depth=_MAX_DEPTH)
        except ValueError as error:
            raise CannotVerify(f"the hub's answer to {path} is not JSON") from error
        if not isinstance(body, dict):
            raise CannotVerify(f"the hub's answer to {path} is not a JSON object")
        return body

    def proof(self, path: str) -> list[bytes]:
        try:
            return [base64.b64decode(h, validate=True) for h in self.json(path)["hashes"]]
        except (KeyError, TypeError, binascii.Error) as error:
            raise VerificationFailed(f"the hub's proof {path} is malformed") from error
