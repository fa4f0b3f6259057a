"""Signed checkpoints of the audit log (C2SP tlog-checkpoint as a C2SP signed note).

One :class:`Checkpointer` task per hub process signs the tree every
``checkpoint_interval`` seconds when it has grown since the last stored
checkpoint, the first time before the hub serves. Processes sharing one database may
race: the tree of a given size is the same for all of them, Ed25519 signatures are
deterministic, and the size is the table's primary key with conflicts ignored, so one
size never has two checkpoints.

A checkpoint is a promise that cannot be taken back, so before signing a size the
task proves, from the stored tree, that it extends the latest stored checkpoint (RFC
9162 §2.1.4). If it does not (a stored entry or subtree hash was changed or lost),
it signs nothing, raises :attr:`Checkpointer.alarm` for ``/readyz`` and logs the
problem once, until the tree extends that checkpoint again.

Every round, the first and each later one, waits at most ``round_seconds``: a lock
held on the checkpoints' table (an index being built, a migration, a stuck session)
ends the round, which is logged and tried again at the next interval; it never stops
the task nor holds it forever. A round that fails (the database away) is tried again
at the next interval too: the first failure of a run is logged with its traceback,
each later one as a WARNING line with the count, and the first round that succeeds
again says so.

A hub whose checkpoint key was rotated (``onceonly keys rotate-checkpoint``, decision
0091) finds the latest stored checkpoint signed by the key it replaced until the log
grows. Its first round that finds the log unchanged and sound adds the current key's
signature to that checkpoint's note (a signed note may carry several signatures of one
text: the origin, size and root stay as they are), so the checkpoint it hands out
verifies under the new key at once, and still under the old one.

Every round also checks that the latest stored checkpoint's note is signed by a key the
hub knows (the current one or a retired one, under the log's name or a name it had) and
says the row's size and root: a row changed in the database is neither cosigned nor
extended, and raises the alarm like a tree that does not extend its checkpoint.

A replica still running when another one was rotated or restarted (decision 0093) meets
a latest checkpoint that carries the signature of a key it does not know. It then reads
its keys directory again (at most once every ``RELOAD_SECONDS``): if the keys there
account for that checkpoint, and the current one is not retired, it signs with the
current one from then on, knowing the one it had as retired, as a restart would. If
they do not, the alarm stands. A process that has read its own key among the retired
ones signs nothing more until it finds the current one.
"""

import asyncio
import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from onceonly.hub.audit import leaves, repository, tree
from onceonly.hub.audit.exceptions import AuditLogDamaged
from onceonly.hub.audit.models import AuditCheckpoint
from onceonly.hub.audit.notes import (
    Checkpoint,
    NoteError,
    Signer,
    Verifier,
    key_id,
    read_note,
    signed_by,
)
from onceonly.hub.audit.schemas import CheckpointOut, CheckpointPage
from onceonly.hub.config import AUDIT_ORIGIN_FILE
from onceonly.hub.kit.clock import SYSTEM_CLOCK, Clock
from onceonly.hub.kit.keyfiles import (
    MissingKeyError,
    ed25519_key,
    own_like_folder,
    rotate_ed25519_key,
)
from onceonly.hub.kit.problems import Unavailable

log = logging.getLogger("onceonly.audit")

KEY_FILE = "checkpoint.jwk"
RETIRED_FOLDER = "checkpoint-retired"
"""Under the keys directory, the verifier keys of the checkpoint keys a rotation
replaced, one file each, named after the time of the rotation (UTC):
``20261207T104500Z.vkey``, holding ``<origin>+<key id>+<public key>``. Public: the
private key a rotation replaces is not kept (decision 0091, follow-up)."""
RETIRED_SUFFIX = ".vkey"
ROUND_SECONDS = 5.0
"""How long a checkpoint round may take: the hub's start waits at most this for its
first round, and each later round ends after it (and is tried again)."""
RELOAD_SECONDS = 10.0
"""At most how often a checkpointer reads its keys directory again while the latest
checkpoint carries the signature of a key it does not know (decision 0093): a key that
reaches the host late (a Kubernetes Secret is updated in the pods within a minute or
two) is found this long after, and a real alarm reads the disk no more often."""


class RetiredKeyInUse(RuntimeError):
    """``checkpoint.jwk`` holds a key that a rotation retired."""


def load_signer(
    *, keys_dir: Path, origin: str, create: bool, refuse_retired: bool = True
) -> Signer:
    """The checkpoint signer: the Ed25519 key in ``<keys_dir>/checkpoint.jwk``, named
    after the log's origin (tlog-checkpoint: the key name SHOULD be the origin), with the
    verifier keys of the keys it replaced (``checkpoint-retired/*.vkey``).

    Where keys may be created (development), the origin is also kept beside the key
    (``audit-origin``), so that the log keeps its name when the hub is restarted on
    another address (Settings.resolved_audit_origin reads it back).

    RetiredKeyInUse when the key is one a rotation retired (a backup from before the
    rotation restored, a host not given the new key), unless ``refuse_retired`` is
    false (the rotation itself, which may finish one that was interrupted).
    """
    key = ed25519_key(keys_dir / KEY_FILE, create=create)
    if create:
        _keep_origin(keys_dir / AUDIT_ORIGIN_FILE, origin)
    retired = retired_keys(keys_dir)
    signer = Signer(origin, key.private_key, retired=tuple(retired.values()))  # type: ignore[arg-type]
    if refuse_retired:
        _refuse_retired(signer, keys_dir=keys_dir, retired=retired)
    return signer


def retired_keys(keys_dir: Path) -> dict[Path, Verifier]:
    """The verifier keys in ``<keys_dir>/checkpoint-retired/*.vkey``, oldest first;
    NoteError naming a file that is not one."""
    folder = keys_dir / RETIRED_FOLDER
    found = {}
    for path in sorted(folder.glob(f"*{RETIRED_SUFFIX}")) if folder.is_dir() else []:
        try:
            found[path] = Verifier.parse(path.read_text(encoding="utf-8"))
        except (NoteError, UnicodeDecodeError) as error:
            raise NoteError(f"{path} does not hold a verifier key: {error}") from error
    return found


def _refuse_retired(signer: Signer, *, keys_dir: Path, retired: dict[Path, Verifier]) -> None:
    for path, verifier in retired.items():
        if verifier.public_key == signer.verifier.public_key:
            raise RetiredKeyInUse(
                f"{keys_dir / KEY_FILE} is the checkpoint key that was retired in {path}:"
                " a backup from before the rotation was restored, or this host was not"
                " given the new key. Put the current checkpoint.jwk back (from another"
                " replica or the newest backup); if it is lost, run `onceonly keys"
                " rotate-checkpoint` again and publish the new verifier key"
                " (docs/operations.md)"
            )


def _reread_signer(keys_dir: Path, *, origin: str) -> Signer | None:
    """The signer the keys directory holds now, with its retired keys, or None while it
    holds none that can be read (``keys rotate-checkpoint`` replacing a file, a Secret
    being updated, a file that is not a key): no new key yet. Never refused as retired
    here: the caller decides."""
    try:
        signer = load_signer(keys_dir=keys_dir, origin=origin, create=False, refuse_retired=False)
    except (OSError, ValueError, TypeError, KeyError, MissingKeyError, JoseError) as error:
        log.debug("the checkpoint keys in %s cannot be read yet: %s", keys_dir, error)
        return None
    return signer if isinstance(signer.private_key, Ed25519PrivateKey) else None


@dataclass(frozen=True)
class Rotated:
    """A rotation of the checkpoint key: the new signer, the verifier key of the one it
    replaced, and the file that keeps that verifier key."""

    signer: Signer
    retired: Verifier
    kept: Path


def rotate_signer(*, keys_dir: Path, origin: str, now: datetime) -> Rotated:
    """A new Ed25519 key in ``<keys_dir>/checkpoint.jwk``; the verifier key of the one
    it replaces is kept in ``<keys_dir>/checkpoint-retired/<now, UTC>.vkey``, and its
    private key nowhere. MissingKeyError without a key to replace."""
    kept = keys_dir / RETIRED_FOLDER / f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}{RETIRED_SUFFIX}"

    def verifier_of(key: OKPKey) -> Verifier:
        return Signer(origin, key.private_key).verifier  # type: ignore[arg-type]

    key, old = rotate_ed25519_key(
        keys_dir / KEY_FILE, retired=kept, keep=lambda old: f"{verifier_of(old)}\n".encode()
    )
    signer = Signer(origin, key.private_key, retired=tuple(retired_keys(keys_dir).values()))  # type: ignore[arg-type]
    return Rotated(signer, verifier_of(old), kept)


def _keep_origin(path: Path, origin: str) -> None:
    kept = path.read_text(encoding="utf-8").strip() if path.is_file() else None
    if kept == origin:
        return
    if kept is not None:
        log.warning(
            "the audit log's origin changes from %s to %s (audit_origin): auditors must pin"
            " the new verifier key",
            kept,
            origin,
        )
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as temporary:
        own_like_folder(temporary.fileno(), path.parent)  # run as root: the hub's, still
        temporary.write(origin + "\n")
    Path(temporary.name).replace(path)  # whole, even with several processes starting


def _with_retired(signer: Signer, *retired: Verifier) -> Signer:
    """``signer`` also knowing ``retired`` as retired keys, each once, never its own."""
    own = signer.verifier.public_key
    known: dict[bytes, Verifier] = {}
    for verifier in (*signer.retired, *retired):
        if verifier.public_key != own:
            known.setdefault(verifier.public_key, verifier)
    return Signer(signer.name, signer.private_key, retired=tuple(known.values()))


@dataclass(frozen=True)
class Alarm:
    """Why the checkpointer signs nothing: ``kind`` names the problem (logged once while
    it lasts), ``text`` says it as of the latest round (``/readyz``)."""

    kind: str
    text: str


def _signed(signer: Signer, size: int, root: bytes, *, now: datetime) -> AuditCheckpoint:
    note = signer.sign(Checkpoint(signer.name, size, root).text())
    return AuditCheckpoint(tree_size=size, root=root, note=note, time=now)


class Checkpointer:
    """The process's checkpoint task. ``start()`` in the lifespan, ``stop()`` at the end."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        signer: Signer,
        interval: float,
        clock: Clock = SYSTEM_CLOCK,
        round_seconds: float = ROUND_SECONDS,
        keys_dir: Path | None = None,
    ) -> None:
        """``keys_dir``: where ``signer`` was loaded from, read again when another
        process rotated the key (decision 0093); None: never read again."""
        self.signer = signer
        self._keys_dir = keys_dir
        self._reread_at: float | None = None  # monotonic time of the last reading
        self._retired_in_use: str | None = None  # our key, read among the retired ones
        self._engine = engine
        self._clock = clock
        self._interval = interval
        self._round_seconds = round_seconds
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._alarm: Alarm | None = None
        self._stored = False
        self._failures = 0  # rounds failed in a row (the database away, most often)
        self._cosign_pending = True  # until a round finds the latest checkpoint sound

    @property
    def alarm(self) -> str | None:
        """Why the task refuses to sign (the log does not extend its latest checkpoint),
        or None: what ``/readyz`` reports."""
        return None if self._alarm is None else self._alarm.text

    @property
    def stored(self) -> bool:
        """Whether a round has seen a stored checkpoint (or stored one): until then the
        hub has no checkpoint to hand out, and ``/readyz`` says so."""
        return self._stored

    async def start(self) -> None:
        """The first round before the hub serves, so that the checkpoint it hands out is
        a stored one (a promise the next rounds are held to), then a round every
        ``interval`` seconds. Each round waits at most ``round_seconds`` (a lock held on
        the checkpoints' table must not hold the start back, nor the task forever): the
        hub then serves, and is not ready until a round stores a checkpoint."""
        await self._round()
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="audit-checkpointer")

    async def stop(self) -> None:
        """End the task between two rounds: a round under way finishes first (within
        ``round_seconds``), for a round cancelled in the middle of a statement would
        leave its connection to the garbage collector."""
        if self._task is None:
            return
        self._stopping.set()
        await asyncio.wait((self._task,))
        self._task = None

    async def checkpoint(self) -> AuditCheckpoint | None:
        """Sign and store the tree if it grew since the last checkpoint (or none exists)
        and extends it; check that it still does even when it did not grow."""
        async with self._engine.connect() as conn:
            latest = await repository.latest_checkpoint(conn)  # before the size: ≤ it
            self._stored = self._stored or latest is not None
            size = await tree.current_size(conn)
            self._adopt_rotated_key(latest)
            problem = self._refusal(latest)
            problem, root = (problem, None) if problem else await self._check(conn, latest, size)
        self._raise_alarm(problem)
        if problem is not None:
            return None
        assert root is not None
        if latest is not None and size <= latest.tree_size:
            if self._cosign_pending and root == latest.root:
                await self._cosign(latest)
            self._cosign_pending = False
            return None
        current = _signed(self.signer, size, root, now=self._clock.now())
        await repository.store_checkpoint(self._engine, current)
        self._stored = True
        self._cosign_pending = False
        return current

    async def _cosign(self, latest: AuditCheckpoint) -> None:
        """Add this key's signature to ``latest``, whose root the stored tree was just
        found to have, when it lacks one (the key was rotated since it was signed): the
        text signed is the one this key would sign for that tree, and the note keeps its
        other signatures. A note that is not that text (another origin: the log was
        renamed, decision 0089) is left as it is until the log grows."""
        text = Checkpoint(self.signer.name, latest.tree_size, latest.root).text()
        try:
            note = self.signer.cosign(latest.note, text=text)
        except NoteError as error:
            log.warning(
                "the latest audit checkpoint (%d entries) is not signed with the current"
                " checkpoint key, and is left as it is until the log grows: %s",
                latest.tree_size,
                error,
            )
            return
        if note != latest.note and await repository.replace_checkpoint_note(
            self._engine, latest, note=note
        ):
            log.warning(
                "the latest audit checkpoint (%d entries) was signed with another key:"
                " the current checkpoint key (%s) signed it too",
                latest.tree_size,
                self.signer.verifier.key_id.hex(),
            )

    def _adopt_rotated_key(self, latest: AuditCheckpoint | None) -> None:
        """When ``latest`` carries the signature of a key this process does not know,
        read the keys directory again (at most once every ``RELOAD_SECONDS``), and sign
        with the key found there if it is a new current key (not this process's, not
        retired) that signed ``latest`` itself (another process was rotated or
        restarted); the key this process had becomes a retired one, in memory if the
        rotation did not keep it on disk, beside the retired keys read with the new one.

        Nothing else read at run time counts: a verifier key that appears in
        ``checkpoint-retired/`` while ``checkpoint.jwk`` is unchanged, or that signed
        ``latest`` in place of the new key, is not taken (a review, helper-178: a planted
        public file and a row written to the database silenced the alarm and had the hub
        cosign the row); the process reads it at its next start, as before decision 0093."""
        if self._keys_dir is None or latest is None or not _foreign(latest.note, self.signer):
            return
        now = self._clock.monotonic()
        if self._reread_at is not None and now - self._reread_at < RELOAD_SECONDS:
            return
        self._reread_at = now
        disk = _reread_signer(self._keys_dir, origin=self.signer.name)
        if disk is None:
            return
        mine, new = self.signer.verifier, disk.verifier
        retired = {verifier.public_key for verifier in disk.retired}
        adoptable = (
            new.public_key != mine.public_key  # else no new key here: the alarm stands
            and new.public_key not in retired  # a restored old backup: load_signer refuses it
            and _unsigned(latest, Signer(disk.name, disk.private_key)) is None
        )
        if not adoptable:
            if mine.public_key in retired:
                self._retired_in_use = (
                    f"the checkpoint key this process signs with ({mine.key_id.hex()}) is"
                    f" retired in {self._keys_dir / RETIRED_FOLDER}/, and"
                    f" {self._keys_dir / KEY_FILE} did not sign the latest checkpoint: this"
                    " process signs nothing more; give this host the current checkpoint.jwk"
                    " (docs/operations.md)"
                )
            return
        self._retired_in_use = None
        self._adopt(_with_retired(disk, *self.signer.retired, mine), latest)

    def _adopt(self, signer: Signer, latest: AuditCheckpoint) -> None:
        old = self.signer.verifier
        self.signer = signer
        self._cosign_pending = True  # as a replica started on this key would
        log.info(
            "the audit checkpoint key was rotated: this process signs with the current"
            " checkpoint key (%s) from now on; the key it signed with (%s) is a retired one",
            signer.verifier.key_id.hex(),
            old.key_id.hex(),
        )

    def _refusal(self, latest: AuditCheckpoint | None) -> Alarm | None:
        """Why no key of this process may sign after ``latest``, if none may."""
        if self._retired_in_use is not None:
            return Alarm("retired-key", self._retired_in_use)
        problem = _unsigned(latest, self.signer)
        if problem is None:
            return None
        # one line per set of unknown keys, not per size: a row signed by yet another
        # key while this process waits for a rotated one is logged (helper-178)
        unknown = None if latest is None else _unknown_keys(latest.note, self.signer)
        return Alarm(f"unsigned {unknown}", problem)

    async def _check(
        self, conn: repository.Executor, latest: AuditCheckpoint | None, size: int
    ) -> tuple[Alarm | None, bytes | None]:
        """The problem that forbids signing, if any, and the root of ``size``."""
        if latest is not None and size < latest.tree_size:
            return Alarm(
                "shrunk", f"the log has fewer entries than its checkpoint of {latest.tree_size}"
            ), None
        try:
            root = await tree.root_at(conn, size)
            if latest is None or await tree.extends(
                conn, old_size=latest.tree_size, old_root=latest.root, new_size=size, new_root=root
            ):
                return None, root
        except AuditLogDamaged as damage:
            return Alarm("damaged", f"the stored tree is damaged: {damage.detail}"), None
        return Alarm(
            "not-extended",
            f"the stored tree does not extend the checkpoint of {latest.tree_size} entries: a"
            " stored entry or subtree hash was changed (onceonly audit check-nodes finds it)",
        ), None

    def _raise_alarm(self, problem: Alarm | None) -> None:
        """Log once per problem, and once when it is over: not again when only its text
        changes (another replica signing larger checkpoints, which this one cannot
        account for), for ``/readyz`` says the latest."""
        kind = None if problem is None else problem.kind
        if self._alarm is None or kind != self._alarm.kind:
            if problem is not None:
                log.error("audit checkpoints stopped, nothing is signed: %s", problem.text)
            elif self._alarm is not None:
                log.warning("audit checkpoints resumed: the log extends its checkpoint again")
        self._alarm = problem

    async def _run(self) -> None:
        while not await self._stop_within(self._interval):
            await self._round()

    async def _stop_within(self, seconds: float) -> bool:
        """Whether ``stop()`` is called within ``seconds``."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _round(self) -> None:
        try:
            await asyncio.wait_for(self.checkpoint(), self._round_seconds)
        except TimeoutError:
            log.warning(
                "audit checkpoint did not finish within %.1f s (a lock held on"
                " audit_checkpoints?); retrying in %.1f s%s",
                self._round_seconds,
                self._interval,
                "" if self._stored else ", and not ready until one is stored",
            )
        except Exception as error:  # a passing database fault must not stop the checkpoints
            self._failed(error)
        else:
            if self._failures:
                log.warning(
                    "audit checkpoints succeed again, after %d failed rounds", self._failures
                )
            self._failures = 0

    def _failed(self, error: Exception) -> None:
        """The first failed round of a run is logged with its traceback, each later one
        as a line with the count, so that an outage's log stays small (a round a
        second would otherwise write a traceback a second)."""
        self._failures += 1
        if self._failures == 1:
            log.error("audit checkpoint failed; retrying in %.1f s", self._interval, exc_info=error)
            return
        log.warning(
            "audit checkpoint failed again (%s), %d rounds in a row; retrying in %.1f s",
            type(error).__name__,
            self._failures,
            self._interval,
        )

    async def latest_note(self, session: AsyncSession) -> str:
        """The newest stored checkpoint; Unavailable while none is stored (the first
        round failed or is late, and the task retries every ``interval``): a signed note
        that is not stored would be a promise no later round is held to."""
        latest = await repository.latest_checkpoint(session)
        if latest is None:
            why = f": {self._alarm.text}" if self._alarm else ""
            raise Unavailable(f"no checkpoint of the audit log is stored yet{why}")
        return latest.note


def _unsigned(latest: AuditCheckpoint | None, signer: Signer) -> str | None:
    """Why ``latest`` is not a checkpoint this hub signed, if it is not: its note is
    signed by none of the keys the hub knows (``signer``'s and those it replaced, under
    the name the note gives the log: it may have been renamed, decision 0089), or it
    says another tree than its row's. A row changed in the database is then never
    cosigned, nor extended by a new checkpoint."""
    if latest is None:
        return None
    try:
        checkpoint = Checkpoint.parse(read_note(latest.note)[0])
        keys = [signer.verifier, *signer.retired]
        known = [Verifier.of(checkpoint.origin, key.public_key) for key in keys]
    except NoteError:
        checkpoint, known = None, []
    if (
        checkpoint is not None
        and (checkpoint.size, checkpoint.root) == (latest.tree_size, latest.root)
        and signed_by(latest.note, known) is not None
    ):
        return None
    return (
        f"the latest checkpoint ({latest.tree_size} entries) is not signed by the hub's"
        " checkpoint key nor by a key it replaced, or does not say its row's size and root:"
        " it was changed in the database (or this host lacks keys/checkpoint-retired/"
        " from a rotation, or the new keys/checkpoint.jwk: the keys directory, read again,"
        " does not account for it)"
    )


def _foreign(note: str, signer: Signer) -> bool:
    """Whether ``note`` carries a signature line of a key ``signer`` does not know (its
    own or a retired one, under the name the note gives the log): the sign that another
    process signs with another key. False for a malformed note, which no key accounts
    for."""
    unknown = _unknown_keys(note, signer)
    return unknown is not None and unknown != ""


def _unknown_keys(note: str, signer: Signer) -> str | None:
    """The names and key ids (hex) of ``note``'s signature lines that no key ``signer``
    knows signed, sorted and joined; None for a malformed note."""
    try:
        text, lines = read_note(note)
        origin = Checkpoint.parse(text).origin
    except NoteError:
        return None
    keys = (signer.verifier, *signer.retired)
    known = {(origin, key_id(origin, key.public_key)) for key in keys}
    unknown = {f"{name}+{signature[:4].hex()}" for name, signature in lines}
    unknown -= {f"{name}+{kid.hex()}" for name, kid in known}
    return " ".join(sorted(unknown))


async def history(session: AsyncSession, *, since_size: int, limit: int) -> CheckpointPage:
    """Stored checkpoints of size ≥ ``since_size``, oldest first."""
    rows = await repository.checkpoints_from(session, since_size=since_size, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return CheckpointPage(
        checkpoints=[
            CheckpointOut(
                tree_size=row.tree_size, root=leaves.b64(row.root), note=row.note, time=row.time
            )
            for row in rows
        ],
        next_since_size=rows[-1].tree_size + 1 if more else None,
    )
