"""The adapter-local record store: SQLite through SQLAlchemy Core.

The store holds the department's own records (subjects in the clear: it is the
department's data) and the adapter's trail of what it served, received and fetched,
which keeps of each subject only a keyed digest (`TrailKey`): HMAC-SHA-256, under a
secret of this store's (``trail.key`` beside it), of the subject's SHA-256 as request
tokens carry it, and the pseudonym the hub's audit log keeps for it, keyed the same
way under another key derived from that secret (a department client learns
pseudonyms of the subjects it asked about from its own audit entries: in clear, they
would name a served row's subject to anyone holding a copy of the file). The SHA-256 alone
could be reversed by enumerating the few possible identifiers; the keyed digest cannot
without the key (docs/decisions/0064-adapter-trail-keyed-subject-digest.md). The
one-time keys of the trail's commitments are sealed under the same secret (AES-GCM):
in clear, beside the records, they would open each commitment against each record and
so name the subject of every row (0064's follow-ups).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import hmac
import json
import logging
import math
import operator
import os
import re
import secrets
import shutil
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from . import base64url
from ._batches import Failed
from ._errors import ImportFailed, ImportReport, RowError
from ._keys import load_or_create_secret, private_directory
from ._reqtoken import subject_digest, subject_problem
from ._validation import RecordValidator, answer_size_problem, canonical_problem

__all__ = ["TRAIL_KEY_FILE", "RecordStore", "ServedEntry", "TrailKey", "timestamp"]

_GET_RECORD = "SELECT record FROM records WHERE item = ? AND subject = ?"
_SPEND = "INSERT OR IGNORE INTO spent_tokens (jti, forget_after) VALUES (?, ?)"
_PURGE_SPENT = "DELETE FROM spent_tokens WHERE forget_after < ?"
# Spent jtis past their time are deleted at most this often (seconds), in a batch's commit
PURGE_EVERY = 30.0
# Spent jtis are kept this long past their forget_after: a process whose clock runs
# behind, or that a wall-clock step has put back, still finds them.
PURGE_MARGIN = 120.0

_metadata = sa.MetaData()

_records = sa.Table(
    "records",
    _metadata,
    sa.Column("item", sa.String(128), primary_key=True),
    sa.Column("subject", sa.String(256), primary_key=True),
    sa.Column("record", sa.JSON, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
)

_served = sa.Table(
    "served",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64)),
    sa.Column("time", sa.String(32), nullable=False),
    sa.Column("item", sa.String(128), nullable=False),
    sa.Column("consumer", sa.String(128)),
    sa.Column("purpose", sa.String(64)),
    # The subject's keyed digest (TrailKey.digest), and the id of the key it is under:
    # NULL in a row written before digests were keyed, which opening the store keys
    sa.Column("subject_digest", sa.String(64)),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(64)),
    # What was served, committed to under a key of this adapter's own
    # (onceonly.adapters._commitment), the key sealed (TrailKey.seal) under the trail
    # key whose id ``sealed_by`` holds: NULL in a row written before keys were sealed
    sa.Column("commitment", sa.String(64)),
    sa.Column("commitment_key", sa.String(128)),
    # The pseudonym the hub's audit entry keeps for the subject, as its request token
    # said, keyed (TrailKey.pseudonym) under the trail key whose id ``pseudonym_key``
    # holds: what `onceonly adapter reconcile` compares with the entry's ``subject``,
    # keyed the same way. In clear (``pseudonym_key`` NULL) in a row written before
    # pseudonyms were keyed, which opening the store keys
    sa.Column("subject_pseudonym", sa.String(64)),
    sa.Column("subject_key", sa.String(16)),
    sa.Column("sealed_by", sa.String(16)),
    sa.Column("pseudonym_key", sa.String(16)),
)

# Request tokens this adapter accepted, by jti, until no token with that jti holds:
# their single use survives a restart and holds for every process on this file
# (docs/decisions/0030-adapter-refusals-and-replay.md).
_spent = sa.Table(
    "spent_tokens",
    _metadata,
    sa.Column("jti", sa.String(256), primary_key=True),
    sa.Column("forget_after", sa.Float, nullable=False, index=True),  # epoch seconds
    sqlite_with_rowid=False,
)

# The change outbox: written in the same transaction as the record it announces,
# drained by the adapter service, which publishes each change to the hub.
_changes = sa.Table(
    "changes",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("item", sa.String(128), nullable=False),
    sa.Column("subject", sa.String(256), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("time", sa.String(32), nullable=False),
    # The publish's Idempotency-Key, random: not the id, which SQLite gives again once
    # the outbox is empty (and a new store starts again at 1)
    sa.Column("idempotency_key", sa.String(32)),
)

# Change events received from the hub, by event id: the de-duplication register.
_received = sa.Table(
    "received_events",
    _metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("item", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("subject_digest", sa.String(64), nullable=False),  # as the served-log's
    sa.Column("received_at", sa.String(32), nullable=False),
    sa.Column("subject_key", sa.String(16)),
)

# Receipts of records this department fetched through the hub: its side of the
# two-sided evidence that `onceonly adapter reconcile` compares with the hub's log.
_receipts = sa.Table(
    "receipts",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("time", sa.String(32), nullable=False),
    sa.Column("item", sa.String(128), nullable=False),
    sa.Column("purpose", sa.String(64), nullable=False),
    sa.Column("subject_digest", sa.String(64), nullable=False),  # as the served-log's
    sa.Column("log_index", sa.Integer, nullable=False),
    sa.Column("leaf_hash", sa.String(64), nullable=False),
    # The audit entry's commitment to the record and the key the hub gave to open it,
    # sealed as the served-log's
    sa.Column("commitment", sa.String(64)),
    sa.Column("commitment_key", sa.String(128)),
    sa.Column("subject_key", sa.String(16)),
    sa.Column("sealed_by", sa.String(16)),
)

# The tables that keep a subject's digest, as ``subject_digest`` beside ``subject_key``
_TRAIL_TABLES = (_served, _received, _receipts)
# The tables that keep a commitment's key, sealed, as ``commitment_key`` beside ``sealed_by``
_SEALED_TABLES = (_served, _receipts)
# The columns the store fills itself, from a row's subject_sha256 and commitment_key
_COMPUTED = ("subject_digest", "subject_key", "commitment_key", "sealed_by")
# And the served-log's, from a row's subject_pseudonym
_PSEUDONYM_COLUMNS = ("subject_pseudonym", "pseudonym_key")
_SERVED_COMPUTED = (*_COMPUTED, *_PSEUDONYM_COLUMNS)
# What stores written before digests were keyed call their ``subject_digest`` column
_PLAIN_COLUMN = "subject_sha256"

_MAX_SUBJECT = 256
# The served-log's columns that a ServedEntry's fields of the same name fill
_SERVED_FIELDS = tuple(
    column.name for column in _served.c if column.name not in ("id", *_SERVED_COMPUTED)
)
_INSERT_SERVED = (
    f"INSERT INTO served ({', '.join((*_SERVED_FIELDS, *_SERVED_COMPUTED))})"
    f" VALUES ({', '.join('?' * (len(_SERVED_FIELDS) + len(_SERVED_COMPUTED)))})"
)

TRAIL_KEY_FILE = "trail.key"
"""The trail key's file, beside the store's (in ``data_dir``, with ``client-key.jwk``)."""
_KEY_ID_INPUT = b"onceonly adapter trail key id"
_SEAL_KEY_INPUT = b"onceonly adapter trail commitment key seal"
_PSEUDONYM_KEY_INPUT = b"onceonly adapter trail pseudonym key"
_NONCE = 12  # bytes: AES-GCM's 96-bit nonce, random for each seal
# PRAGMA user_version of a store whose free space has been scrubbed (VACUUM) of what
# earlier versions left there: scrubbed once, and again after a migration rewrote rows
_SCRUBBED = 1


class TrailKey:
    """The secret under which the trail keeps subjects: ``digest`` is HMAC-SHA-256 of
    the subject's SHA-256 (the request token's ``subject_sha256`` claim, its base64url
    text), base64url. ``id`` names the key (an HMAC of a constant under it: it says
    nothing of the key) and is kept beside each digest made under it. ``seal`` encrypts
    a commitment's key (AES-256-GCM under another HMAC of a constant under it), bound
    to the row it belongs to (``context``), which ``unseal`` opens. ``pseudonym`` is
    HMAC-SHA-256, under another HMAC of a constant under it, of the hub's pseudonym of
    a subject, base64url: what the served-log keeps of it, and what reconcile makes of
    the hub's entry's ``subject`` to compare the two.

    Example::

        key = TrailKey(bytes(32))
        key.digest(subject_digest("38001085718"))  # what the trail keeps of that subject
    """

    def __init__(self, secret: bytes) -> None:
        self._keyed = hmac.new(secret, digestmod=hashlib.sha256)  # copied for each digest
        self.id = hmac.new(secret, _KEY_ID_INPUT, hashlib.sha256).hexdigest()[:16]
        self._sealing = AESGCM(hmac.new(secret, _SEAL_KEY_INPUT, hashlib.sha256).digest())
        pseudonym_secret = hmac.new(secret, _PSEUDONYM_KEY_INPUT, hashlib.sha256).digest()
        self._pseudonyms = hmac.new(pseudonym_secret, digestmod=hashlib.sha256)

    def __repr__(self) -> str:
        return f"TrailKey(id={self.id!r})"  # never the secret

    def digest(self, subject_sha256: str) -> str:
        return _mac(self._keyed, subject_sha256)

    def pseudonym(self, pseudonym: str) -> str:
        return _mac(self._pseudonyms, pseudonym)

    def seal(self, plain: str, *, context: str) -> str:
        """``plain`` encrypted, base64url of nonce ‖ ciphertext ‖ tag; ``context`` (the
        row's table and request id) is authenticated with it, not stored."""
        nonce = os.urandom(_NONCE)
        sealed = self._sealing.encrypt(nonce, plain.encode("utf-8"), context.encode("utf-8"))
        return base64url.encode(nonce + sealed)

    def unseal(self, sealed: str, *, context: str) -> str | None:
        """What `seal` sealed with ``context`` under this key; None if it was not
        (another key, another row, or altered)."""
        try:
            raw = base64url.decode(sealed)
            plain = self._sealing.decrypt(raw[:_NONCE], raw[_NONCE:], context.encode("utf-8"))
            return plain.decode("utf-8")
        except (ValueError, InvalidTag):  # UnicodeDecodeError is a ValueError
            return None


def _mac(keyed: Any, text: str) -> str:
    mac = keyed.copy()
    mac.update(text.encode("utf-8"))
    return base64url.encode(mac.digest())


def _seal_context(table: str, request_id: str | None) -> str:
    """What a sealed commitment key is bound to: its table and request id, so that a
    sealed key copied into another row does not open."""
    return f"{table}\x00{request_id or ''}"


@dataclass(frozen=True)
class ReceiptRow:
    """The hub's receipt of one record this department fetched (never the subject)."""

    request_id: str
    item: str
    purpose: str
    subject_sha256: str | None  # to record: the store keeps only its keyed digest
    index: int
    leaf_hash: str
    commitment: str | None = None
    commitment_key: str | None = None
    time: str | None = None  # when it was recorded here (RFC 3339, UTC); None: now
    subject_digest: str | None = None  # as `RecordStore.receipts` reads it (TrailKey)


@dataclass(frozen=True)
class Change:
    """A record that changed in this store and must be announced to the hub."""

    id: int
    item: str
    subject: str
    kind: str
    idempotency_key: str  # the same for every attempt to publish this change


@dataclass(frozen=True)
class ReceivedEvent:
    """A change event the hub delivered to this department (de-duplicated by id)."""

    event_id: str
    item: str
    kind: str
    owner: str
    subject_sha256: str | None  # to record: the store keeps only its keyed digest
    received_at: str
    subject_digest: str | None = None  # as `RecordStore.received_events` reads it


@dataclass(frozen=True)
class ServedEntry:
    """One line of the adapter's own trail: a request it answered or refused.

    To record one, ``subject_sha256`` is the request token's claim; the store keeps
    only its keyed digest, which `RecordStore.served_entries` gives as
    ``subject_digest`` (and ``subject_sha256`` None)."""

    request_id: str | None
    time: str
    item: str
    consumer: str | None
    purpose: str | None
    subject_sha256: str | None
    outcome: str
    reason: str | None
    commitment: str | None = None
    commitment_key: str | None = None
    subject_pseudonym: str | None = None
    subject_digest: str | None = None


@dataclass(frozen=True)
class _Row:
    row: int
    subject: str | None
    record: dict[str, Any] | None = None
    error: str | None = None


logger = logging.getLogger("adapters.store")

# SQLite gives the files it creates beside a database (-wal, -shm, -journal) the
# database file's own permissions: a database made 0600 keeps them all 0600.
_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def _private_file(path: Path) -> None:
    """Create the database file 0600 whatever the umask, before SQLite opens it; of one
    that exists, warn when its group or others may read it (it is not changed: the
    operator may have a reason, and must see it)."""
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        _warn_if_shared(path)
        return
    try:
        os.fchmod(descriptor, 0o600)
    finally:
        os.close(descriptor)


def _warn_if_shared(path: Path, *, holds: str = "records and the served-log") -> None:
    for side in _SIDE_FILES:
        file = path.with_name(path.name + side)
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            logger.warning(
                "%s is readable or writable by its group or others (mode %04o): it holds"
                " %s; chmod 600 it",
                file,
                mode,
                holds,
            )


def _tune(dbapi_connection: Any, _record: Any) -> None:
    # WAL: the provider's readers do not queue behind served-log writes; NORMAL
    # sync in WAL mode survives a crash of the process (not of the machine, for
    # the last commits), which is right for the adapter's own trail. secure_delete:
    # the space a rewritten or deleted value took is zeroed, whatever the build's
    # default (most builds: off), so that a value the store replaced (a plain digest
    # it keyed, a key it sealed, a deleted record) does not stay in the file's free space.
    cursor = dbapi_connection.cursor()
    pragmas = ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=10000", "secure_delete=ON")
    for pragma in pragmas:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


class RecordStore:
    """Records a department publishes for the hub to fetch, in one SQLite file.

    Example::

        with RecordStore("var/adapters/civil-registry/records.db") as store:
            store.put("person.identity", "38001085718", {"given_name": "Mari"})
            store.get("person.identity", "38001085718")  # {"given_name": "Mari"}
    """

    def __init__(self, path: str | Path, *, trail_key: str | Path | None = None) -> None:
        """Open (or create) the store at ``path``, and its trail key at ``trail_key``
        (default: `TRAIL_KEY_FILE` beside it), created 0600 when missing.

        A store written before digests were keyed, or commitment keys sealed, has
        them keyed and sealed here, in one transaction, each row once; the file is then
        scrubbed of the plain values (VACUUM, a WAL checkpoint). Digests under another
        key than this one (the key was lost, or replaced) stay as they are, told apart
        by their key's id; opening logs a WARNING that says how many, at every start,
        since the trail cannot find those subjects any more (decision 0064); their
        commitment keys, sealed under that key, read back as None.

        :raises ConfigError: the trail key's file does not hold a key.
        """
        path = Path(path)
        private_directory(path.parent)
        _private_file(path)
        key_path = path.parent / TRAIL_KEY_FILE if trail_key is None else Path(trail_key)
        secret, created = load_or_create_secret(key_path)
        _warn_if_shared(key_path, holds="the trail's subject key")
        self._trail_key = TrailKey(secret)
        self._directory = path.resolve().parent  # where the file is, if it is a link
        self._engine = sa.create_engine(
            f"sqlite:///{path}", connect_args={"check_same_thread": False}, hide_parameters=True
        )
        sa.event.listen(self._engine, "connect", _tune)
        self._purged_at = -math.inf  # time.monotonic() of the last purge of spent jtis
        self._purge_lock = threading.Lock()
        _metadata.create_all(self._engine)
        _key_plain_digests(self._engine, self._trail_key)
        _add_missing_columns(self._engine)
        _key_earlier_changes(self._engine)
        _scrub(self._engine)
        _warn_of_other_keys(self._engine, key=self._trail_key, path=key_path, created=created)

    @property
    def trail_key(self) -> TrailKey:
        return self._trail_key

    def trail_digest(self, subject: str) -> str:
        """What the trail keeps of ``subject``: the one way to look a subject up in it
        (``WHERE subject_digest = ? AND subject_key = ?``, with `TrailKey.id`)."""
        return self._trail_key.digest(subject_digest(subject))

    def served_about(self, subject: str) -> list[ServedEntry]:
        """The trail's entries about ``subject``, oldest first; only those keyed under
        this store's key (a WARNING at opening counts the others)."""
        return self._served_where(
            _served.c.subject_digest == self.trail_digest(subject),
            _served.c.subject_key == self._trail_key.id,
        )

    def rows_under_other_keys(self) -> int:
        """How many trail digests are keyed under another key than this store's (and
        so cannot be found by subject)."""
        return _count_under_other_keys(self._engine, self._trail_key)

    def check_writable(self, *, wait: float = 0.5) -> None:
        """Raise if the trail cannot be written now: takes SQLite's write lock (waiting at
        most ``wait`` seconds for another writer) and gives it back; writes nothing."""
        connection = self._engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
            try:
                cursor.execute("BEGIN IMMEDIATE")
                cursor.execute("ROLLBACK")
            finally:
                cursor.execute("PRAGMA busy_timeout=10000")  # as _tune set it
                cursor.close()
        finally:
            connection.close()

    def free_bytes(self) -> int:
        """Free space, for an unprivileged writer, on the file system holding the store."""
        return shutil.disk_usage(self._directory).free

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def put(
        self, item: str, subject: str, record: dict[str, Any], *, announce: bool = True
    ) -> None:
        """Insert or replace a record; a replacement bumps its revision by one.

        With ``announce`` (the default) the change is noted, in the same transaction,
        for the adapter to publish to the hub's subscribers; an initial load may
        pass ``announce=False``.

        :raises ValueError: ``subject`` breaks the subject rule, as `import_records`
            refuses it (`subject_problem`): the hub never asks for it, so the record
            could not be served and its change would be refused. The message names the
            rule, never the subject.
        """
        problem = _subject_refusal(subject)
        if problem is not None:
            raise ValueError(f"not stored: the {problem}")
        with self._engine.begin() as connection:
            _upsert(connection, item, records=[(subject, record)], announce=announce)

    def get(self, item: str, subject: str) -> dict[str, Any] | None:
        row = self._row(item, subject)
        return None if row is None else row[0]

    def get_many(self, keys: Sequence[tuple[str, str]]) -> list[dict[str, Any] | Failed | None]:
        """The record of each ``(item, subject)`` in ``keys``, or ``None``: as `get`,
        on one connection, with the driver's own cursor (no statement to build). A
        stored row that does not parse is a `Failed` in its own place only."""
        connection = self._engine.raw_connection()
        try:
            cursor = connection.cursor()
            rows = [cursor.execute(_GET_RECORD, key).fetchone() for key in keys]
            cursor.close()
        finally:
            connection.close()
        return [None if row is None else _parsed(row[0]) for row in rows]

    def revision(self, item: str, subject: str) -> int | None:
        """The record's revision: 1 when first put, one more on each replacement."""
        row = self._row(item, subject)
        return None if row is None else row[1]

    def delete(self, item: str, subject: str) -> bool:
        """Remove a record; ``False`` when there was none."""
        with self._engine.begin() as connection:
            result = connection.execute(sa.delete(_records).where(*_key(item, subject)))
            if result.rowcount > 0:
                _note_changes(connection, item, subjects=[subject], kind="deleted")
        return result.rowcount > 0

    def pending_changes(self, limit: int = 100) -> list[Change]:
        """Changes not yet announced to the hub, oldest first."""
        query = sa.select(
            _changes.c.id,
            _changes.c.item,
            _changes.c.subject,
            _changes.c.kind,
            _changes.c.idempotency_key,
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query.order_by(_changes.c.id).limit(limit)).all()
        return [Change(**row._asdict()) for row in rows]

    def forget_changes(self, ids: Sequence[int]) -> None:
        """Drop changes the hub has accepted."""
        with self._engine.begin() as connection:
            connection.execute(sa.delete(_changes).where(_changes.c.id.in_(list(ids))))

    def record_received_event(self, event: ReceivedEvent) -> bool:
        """Remember a delivered event; ``False`` if it was received before (a redelivery)."""
        statement = sqlite_insert(_received).on_conflict_do_nothing(
            index_elements=[_received.c.event_id]
        )
        values = self._keyed(dataclasses.asdict(event))
        with self._engine.begin() as connection:
            result = connection.execute(statement, [values])
        return result.rowcount > 0

    def record_receipt(self, receipt: ReceiptRow) -> None:
        values = self._keyed(dataclasses.asdict(receipt))
        values["commitment_key"], values["sealed_by"] = self._sealed(
            receipt.commitment_key, table="receipts", request_id=receipt.request_id
        )
        values["log_index"] = values.pop("index")
        values["time"] = receipt.time or timestamp()
        with self._engine.begin() as connection:
            connection.execute(sa.insert(_receipts).values(**values))

    def receipts(self) -> list[ReceiptRow]:
        columns = [c for c in _receipts.c if c.name not in ("id", "subject_key")]
        with self._engine.connect() as connection:
            rows = connection.execute(sa.select(*columns).order_by(_receipts.c.id)).all()
        return [
            ReceiptRow(
                subject_sha256=None,
                **{
                    ("index" if k == "log_index" else k): v
                    for k, v in self._unsealed(row._asdict(), table="receipts").items()
                },
            )
            for row in rows
        ]

    def received_events(self) -> list[ReceivedEvent]:
        columns = [c for c in _received.c if c.name != "subject_key"]
        query = sa.select(*columns).order_by(_received.c.received_at)
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [ReceivedEvent(subject_sha256=None, **row._asdict()) for row in rows]

    def _keyed(self, values: dict[str, Any]) -> dict[str, Any]:
        """A trail row's ``values`` with its ``subject_sha256`` replaced by its keyed
        digest and the key's id."""
        plain = values.pop("subject_sha256")
        values["subject_digest"], values["subject_key"] = self._digest_and_key(plain)
        return values

    def _digest_and_key(self, subject_sha256: str | None) -> tuple[str | None, str | None]:
        if subject_sha256 is None:
            return None, None
        return self._trail_key.digest(subject_sha256), self._trail_key.id

    def _sealed(
        self, commitment_key: str | None, *, table: str, request_id: str | None
    ) -> tuple[str | None, str | None]:
        """A commitment key as the store keeps it: sealed, and the sealing key's id."""
        if commitment_key is None:
            return None, None
        context = _seal_context(table, request_id)
        return self._trail_key.seal(commitment_key, context=context), self._trail_key.id

    def _unsealed(self, values: dict[str, Any], *, table: str) -> dict[str, Any]:
        """A row's ``values`` with its ``commitment_key`` unsealed (None when it is
        sealed under another key) and no ``sealed_by``. A key with no ``sealed_by`` was
        written in clear by an earlier version since this store was opened: as it is."""
        sealed_by, sealed = values.pop("sealed_by"), values["commitment_key"]
        if sealed is not None and sealed_by is not None:
            values["commitment_key"] = (
                self._trail_key.unseal(sealed, context=_seal_context(table, values["request_id"]))
                if sealed_by == self._trail_key.id
                else None
            )
        return values

    def count(self, item: str) -> int:
        query = sa.select(sa.func.count()).select_from(_records).where(_records.c.item == item)
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def import_csv(
        self, item: str, path: str | Path, schema: dict[str, Any], *, announce: bool = True
    ) -> ImportReport:
        """Import a CSV file, all or nothing.

        Columns are ``subject`` and the record's property names; a dotted name
        (``address.city``) builds a nested object. Cells are converted to the type
        the schema declares for the property (integer, number, boolean, string);
        an empty cell leaves the property out. Every record is validated against
        ``schema`` (Draft 2020-12, formats checked).

        :raises ImportFailed: any row is refused; nothing was written, and
            ``error.report`` names every refused row.
        """
        return self._import(item, _csv_rows(Path(path), schema), schema, announce=announce)

    def import_jsonl(
        self, item: str, path: str | Path, schema: dict[str, Any], *, announce: bool = True
    ) -> ImportReport:
        """Import lines of ``{"subject": ..., "record": {...}}``, all or nothing,
        validated as in `import_csv`."""
        return self._import(item, _jsonl_rows(Path(path)), schema, announce=announce)

    def import_records(
        self,
        item: str,
        records: Iterable[tuple[str, dict[str, Any]]],
        schema: dict[str, Any],
        *,
        announce: bool = True,
    ) -> ImportReport:
        """Import ``(subject, record)`` pairs, all or nothing, validated as in
        `import_csv`; rows are numbered from 1."""
        rows = (
            _Row(row=number, subject=subject, record=record)
            for number, (subject, record) in enumerate(records, start=1)
        )
        return self._import(item, rows, schema, announce=announce)

    def record_served(
        self,
        *,
        request_id: str | None,
        item: str,
        consumer: str | None,
        purpose: str | None,
        subject_sha256: str | None,
        outcome: str,
        reason: str | None = None,
        commitment: str | None = None,
        commitment_key: str | None = None,
        subject_pseudonym: str | None = None,
    ) -> None:
        """Append to the adapter's trail. Pass a subject's SHA-256, never the subject,
        and the pseudonym the hub's request token named for it."""
        entry = ServedEntry(
            request_id=request_id,
            time=timestamp(),
            item=item,
            consumer=consumer,
            purpose=purpose,
            subject_sha256=subject_sha256,
            outcome=outcome,
            reason=reason,
            commitment=commitment,
            commitment_key=commitment_key,
            subject_pseudonym=subject_pseudonym,
        )
        self.record_served_many([entry])

    def record_served_many(self, entries: Sequence[ServedEntry]) -> list[None]:
        """Append ``entries`` to the trail in one transaction (a group commit: all or
        none); one ``None`` per entry, for `ThreadBatches`."""
        rows = [self._served_row(entry) for entry in entries]
        with self._engine.begin() as connection:
            connection.exec_driver_sql(_INSERT_SERVED, rows)
        return [None] * len(entries)

    def _served_row(self, entry: ServedEntry) -> tuple[Any, ...]:
        """The ``_INSERT_SERVED`` parameters of ``entry``: its subject and pseudonym
        keyed, its commitment key sealed."""
        sealed = self._sealed(entry.commitment_key, table="served", request_id=entry.request_id)
        digest = self._digest_and_key(entry.subject_sha256)
        return (*_served_fields(entry), *digest, *sealed, *self._pseudonym(entry.subject_pseudonym))

    def _pseudonym(self, pseudonym: str | None) -> tuple[str | None, str | None]:
        """The hub's pseudonym as the served-log keeps it: keyed, and the key's id."""
        if pseudonym is None:
            return None, None
        return self._trail_key.pseudonym(pseudonym), self._trail_key.id

    def spend_and_record(self, batch: Sequence[tuple[str, float, ServedEntry]]) -> list[bool]:
        """For each ``(jti, forget_after, entry)``: spend the request token's ``jti`` and
        append ``entry`` to the trail, the whole batch in one transaction (a group
        commit: all or none). ``False`` in an entry's place, and no entry, when its
        ``jti`` was spent before, by any process on this file (SQLite serializes their
        writes; the jti is the table's key), or when its ``forget_after`` has passed by
        the time of the commit (a token checked before a slow source read or lock wait:
        its spent row may have been purged meanwhile). Spent jtis more than
        `PURGE_MARGIN` past their ``forget_after`` are deleted in the same commit, at
        most every `PURGE_EVERY` seconds."""
        with _raw_transaction(self._engine) as cursor:
            now = time.time()
            fresh = [
                after >= now and cursor.execute(_SPEND, (jti, after)).rowcount == 1
                for jti, after, _ in batch
            ]
            entries = [
                self._served_row(entry)
                for (_, _, entry), ok in zip(batch, fresh, strict=True)
                if ok
            ]
            cursor.executemany(_INSERT_SERVED, entries)
            if self._purge_due():
                cursor.execute(_PURGE_SPENT, (now - PURGE_MARGIN,))
        return fresh

    def spent_tokens(self, *, now: float | None = None) -> list[tuple[str, float]]:
        """The ``(jti, forget_after)`` of every request token spent and not yet past its
        time at ``now`` (epoch seconds; default: now)."""
        moment = time.time() if now is None else now
        query = sa.select(_spent.c.jti, _spent.c.forget_after).where(
            _spent.c.forget_after >= moment
        )
        with self._engine.connect() as connection:
            return [(row.jti, row.forget_after) for row in connection.execute(query)]

    def _purge_due(self) -> bool:
        with self._purge_lock:
            now = time.monotonic()
            if now - self._purged_at < PURGE_EVERY:
                return False
            self._purged_at = now
            return True

    def served_entries(self) -> list[ServedEntry]:
        """The whole trail, oldest first."""
        return self._served_where()

    def _served_where(self, *where: sa.ColumnElement[bool]) -> list[ServedEntry]:
        columns = [column for column in _served.c if column.name not in ("id", "subject_key")]
        query = sa.select(*columns).where(*where).order_by(_served.c.id)
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            ServedEntry(
                subject_sha256=None,
                **self._keyed_pseudonym(self._unsealed(row._asdict(), table="served")),
            )
            for row in rows
        ]

    def _keyed_pseudonym(self, values: dict[str, Any]) -> dict[str, Any]:
        """A served row's ``values`` with its pseudonym as `TrailKey.pseudonym` under
        this store's key makes it (None when it is keyed under another) and no
        ``pseudonym_key``. A pseudonym with no ``pseudonym_key`` was written in clear by
        an earlier version since this store was opened: keyed here."""
        key_id, kept = values.pop("pseudonym_key"), values["subject_pseudonym"]
        if kept is not None and key_id is None:
            values["subject_pseudonym"] = self._trail_key.pseudonym(kept)
        elif key_id is not None and key_id != self._trail_key.id:
            values["subject_pseudonym"] = None
        return values

    def _row(self, item: str, subject: str) -> tuple[dict[str, Any], int] | None:
        query = sa.select(_records.c.record, _records.c.revision).where(*_key(item, subject))
        with self._engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else (dict(row.record), int(row.revision))

    def _import(
        self, item: str, rows: Iterable[_Row], schema: dict[str, Any], *, announce: bool
    ) -> ImportReport:
        validator = RecordValidator(schema)  # as the provider checks what it serves
        accepted: dict[str, dict[str, Any]] = {}
        first_row: dict[str, int] = {}
        errors: list[RowError] = []
        for row in rows:
            message = row.error or _check_row(row, first_row)
            if message is None and row.record is not None:
                message = (
                    validator.violation(row.record)
                    or canonical_problem(row.record)
                    or answer_size_problem(item, row.record)
                )
            if message is not None:
                errors.append(RowError(row=row.row, subject=row.subject, message=message))
            elif row.subject is not None and row.record is not None:
                accepted[row.subject] = row.record
        if errors:
            report = ImportReport(imported=0, errors=errors)
            raise ImportFailed(f"{len(errors)} row(s) refused; nothing imported", report=report)
        with self._engine.begin() as connection:
            _upsert(connection, item, records=list(accepted.items()), announce=announce)
        return ImportReport(imported=len(accepted))


_served_fields = operator.attrgetter(*_SERVED_FIELDS)


def _check_row(row: _Row, first_row: dict[str, int]) -> str | None:
    subject = row.subject or ""
    problem = _subject_refusal(subject)
    if problem is not None:
        return problem
    if subject in first_row:
        return f"subject repeats row {first_row[subject]}"
    first_row[subject] = row.row
    return None


def _subject_refusal(subject: str) -> str | None:
    """Why the store refuses ``subject`` (``"subject is missing"``...), or ``None``:
    the hub would never ask for it (`subject_problem`, and at most 256 characters)."""
    if not subject:
        return "subject is missing"
    if len(subject) > _MAX_SUBJECT:
        return f"subject is longer than {_MAX_SUBJECT} characters"
    problem = subject_problem(subject)
    return None if problem is None else problem.removeprefix("the ")


def _parsed(stored: str) -> dict[str, Any] | Failed:
    """A stored record's JSON, or what was wrong with it for its caller alone."""
    try:
        record: dict[str, Any] = json.loads(stored)
    except (ValueError, RecursionError) as error:
        return Failed(error)
    return record


def _key(item: str, subject: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (_records.c.item == item, _records.c.subject == subject)


def _upsert(
    connection: sa.Connection,
    item: str,
    *,
    records: list[tuple[str, dict[str, Any]]],
    announce: bool,
) -> None:
    if not records:
        return
    now = timestamp()
    statement = sqlite_insert(_records)
    statement = statement.on_conflict_do_update(
        index_elements=[_records.c.item, _records.c.subject],
        set_={
            "record": statement.excluded.record,
            "revision": _records.c.revision + 1,
            "updated_at": statement.excluded.updated_at,
        },
    )
    parameters = [
        {"item": item, "subject": subject, "record": record, "revision": 1, "updated_at": now}
        for subject, record in records
    ]
    connection.execute(statement, parameters)
    if announce:
        _note_changes(connection, item, subjects=[s for s, _ in records], kind="changed")


def _note_changes(connection: sa.Connection, item: str, *, subjects: list[str], kind: str) -> None:
    now = timestamp()
    rows = [
        {"item": item, "subject": s, "kind": kind, "time": now, "idempotency_key": _new_key()}
        for s in subjects
    ]
    connection.execute(sa.insert(_changes), rows)


def _new_key() -> str:
    return secrets.token_hex(16)


def timestamp() -> str:
    """Now, as the store writes times: RFC 3339, UTC, milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- CSV and JSONL parsing -------------------------------------------------------------


def _csv_rows(path: Path, schema: dict[str, Any]) -> Iterator[_Row]:
    """Each row of the CSV file ``path`` as a record, or what is wrong with it. What
    the csv module cannot read (a cell over its 128 KiB field limit, a line break in
    an unquoted cell) ends the file there, with that row's error."""
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as file:
        reader = csv.DictReader(file)
        number = 1  # the row being read: the header's, then each record's
        try:
            header_error = _check_header(reader.fieldnames)
            if header_error is not None:
                yield _Row(row=1, subject=None, error=header_error)
                return
            types = {name: _declared_type(schema, name) for name in reader.fieldnames or []}
            number = 2
            for cells in reader:
                yield _csv_row(number, cells, types=types)
                number += 1
        except csv.Error as error:
            yield _Row(row=number, subject=None, error=f"not CSV: {error}")


def _not_text(*texts: str) -> bool:
    """Whether any of ``texts``, read with ``surrogateescape``, held bytes that are not
    UTF-8 (each such byte reads as a lone surrogate)."""
    return any(not text.isascii() and _SURROGATE.search(text) for text in texts)


_SURROGATE = re.compile(r"[\ud800-\udfff]")
_NOT_UTF8 = "not UTF-8 text"


def _check_header(columns: Sequence[str] | None) -> str | None:
    if columns and _not_text(*columns):
        return _NOT_UTF8
    if not columns or "subject" not in columns:
        return "the header has no 'subject' column"
    for column in columns:
        for other in columns:
            if other.startswith(column + "."):
                return f"column {other!r} conflicts with column {column!r}"
    if len(set(columns)) != len(columns):
        return "the header repeats a column"
    return None


def _csv_row(number: int, cells: dict[str | Any, Any], *, types: dict[str, str | None]) -> _Row:
    if _not_text(*(text for text in cells.values() if isinstance(text, str))):
        return _Row(row=number, subject=None, error=_NOT_UTF8)
    subject = cells.pop("subject", None) or None
    if None in cells:
        return _Row(row=number, subject=subject, error="the row has more cells than the header")
    record: dict[str, Any] = {}
    for column, text in cells.items():
        if not text:
            continue
        try:
            value = _coerce(text, types[column])
        except ValueError:
            message = f"column {column!r}: expected {types[column]}"
            return _Row(row=number, subject=subject, error=message)
        _place(record, column.split("."), value)
    return _Row(row=number, subject=subject, record=record)


def _declared_type(schema: dict[str, Any], column: str) -> str | None:
    node: Any = schema
    for part in column.split("."):
        properties = node.get("properties") if isinstance(node, dict) else None
        node = properties.get(part) if isinstance(properties, dict) else None
    declared = node.get("type") if isinstance(node, dict) else None
    if isinstance(declared, list):
        declared = next((kind for kind in declared if kind != "null"), None)
    return declared if isinstance(declared, str) else None


def _coerce(text: str, kind: str | None) -> object:
    if kind == "integer":
        return int(text)
    if kind == "number":
        try:
            return int(text)
        except ValueError:
            number = float(text)
        if not math.isfinite(number):
            raise ValueError("not a finite number")
        return number
    if kind == "boolean":
        return _boolean(text)
    return text


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "yes", "1"}:
        return True
    if lowered in {"false", "no", "0"}:
        return False
    raise ValueError("not a boolean")


def _place(record: dict[str, Any], parts: list[str], value: object) -> None:
    for part in parts[:-1]:
        record = record.setdefault(part, {})
    record[parts[-1]] = value


def _jsonl_rows(path: Path) -> Iterator[_Row]:
    with path.open(encoding="utf-8-sig", errors="surrogateescape") as file:
        for number, line in enumerate(file, start=1):
            if line.strip():
                yield _jsonl_row(number, line)


def json_document(text: str) -> Any:
    """``text`` read as JSON (RFC 8259), as the hub and the provider read it.

    :raises ValueError: it is not JSON, with a message that quotes none of it; Python's
        ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON; a number past a float's
        range (``1e400``, which Python reads as infinity), one of more than 4300 digits,
        an object that repeats a name (Python keeps the last; the hub refuses it) and an
        array or object nested past Python's recursion limit are refused too.
    """
    try:
        return json.loads(
            text, parse_constant=_no_constant, parse_float=_finite, object_pairs_hook=_unique
        )
    except json.JSONDecodeError as error:
        raise ValueError(error.msg) from None
    except RecursionError:
        raise ValueError("nested too deep") from None
    except ValueError as error:  # int() past sys.get_int_max_str_digits(), or a constant
        constant = str(error) if isinstance(error, _Constant) else None
        raise ValueError(constant or "a number has too many digits") from None


class _Constant(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _Constant(f"{name} is not JSON")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's members, refused when a name repeats (the name is not quoted: it
    may be anything the file holds)."""
    members = dict(pairs)
    if len(members) != len(pairs):
        raise _Constant("an object repeats a member name")
    return members


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _Constant("a number is beyond a float's range")
    return number


def _jsonl_row(number: int, line: str) -> _Row:
    if _not_text(line):
        return _Row(row=number, subject=None, error=_NOT_UTF8)
    try:
        document = json_document(line)
    except ValueError as error:
        return _Row(row=number, subject=None, error=f"not JSON: {error}")
    if not isinstance(document, dict) or set(document) != {"subject", "record"}:
        return _Row(row=number, subject=None, error="expected {'subject': ..., 'record': {...}}")
    subject, record = document["subject"], document["record"]
    if not isinstance(subject, str) or not isinstance(record, dict):
        return _Row(row=number, subject=None, error="subject must be a string, record an object")
    return _Row(row=number, subject=subject, record=record)


def _add_missing_columns(engine: sa.Engine) -> None:
    """Stores written by earlier versions lack the newer (nullable) trail columns: add
    them, so that an upgraded adapter keeps its trail."""
    inspector = sa.inspect(engine)
    with engine.begin() as connection:
        for table in _metadata.sorted_tables:
            present = {column["name"] for column in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present:
                    kind = column.type.compile(dialect=engine.dialect)
                    connection.exec_driver_sql(
                        f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}'
                    )


def _key_earlier_changes(engine: sa.Engine) -> None:
    """Changes noted before publishes carried an idempotency key get one each, random
    (SQLite evaluates ``randomblob`` once per row), before any of them is published."""
    with engine.begin() as connection:
        connection.execute(
            sa.update(_changes)
            .where(_changes.c.idempotency_key.is_(None))
            .values(idempotency_key=sa.func.lower(sa.func.hex(sa.func.randomblob(16))))
        )


def _key_plain_digests(engine: sa.Engine, key: TrailKey) -> None:
    """Key the subject digests that a store written before they were keyed keeps plain
    (its ``subject_sha256`` columns become ``subject_digest`` beside ``subject_key``):
    each becomes ``key.digest`` of itself; seal the commitment keys it keeps in clear
    (``sealed_by`` NULL); and key the hub's pseudonyms the served-log keeps in clear
    (``pseudonym_key`` NULL: ``key.pseudonym``). One transaction, which takes SQLite's
    write lock first, for every table: it is all done or none of it, and a row is keyed
    (sealed) only while its marker (``subject_key``, ``sealed_by``, ``pseudonym_key``)
    is NULL, which the same statement sets, so that no row is ever keyed or sealed
    twice (by a second opening, or by another process opening it at once). A rewrite
    unmarks the file as scrubbed, in the same transaction, so that `_scrub` takes the
    plain values out of its free space."""
    with _raw_transaction(engine, begin="BEGIN IMMEDIATE") as cursor:
        rewritten = sum(_key_table(cursor, table.name, key) for table in _TRAIL_TABLES)
        rewritten += sum(_seal_table(cursor, table.name, key) for table in _SEALED_TABLES)
        rewritten += _key_pseudonyms(cursor, key)
        if rewritten:
            cursor.execute("PRAGMA user_version=0")


def _checkpoint(engine: sa.Engine) -> bool:
    """Copy the WAL into the database file and truncate it; whether all of it went in
    (the pages another process still reads stay in the WAL until it is done: the next
    checkpoint takes them)."""
    connection = engine.raw_connection()
    try:
        busy, log, done = connection.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        connection.close()
    return bool(busy == 0 and log == done)


def _scrub(engine: sa.Engine) -> None:
    """Rebuild the file (VACUUM) and checkpoint its WAL into it, emptied, unless
    ``PRAGMA user_version`` marks it scrubbed: plain values may rest in its free space,
    where a version that did not set secure_delete left them (its own writes leave old
    bytes where pages split; secure_delete zeroes only what this version frees). A
    file keyed by 0064's first version was never marked; `_key_plain_digests` unmarks
    one it rewrote rows of. An interruption before the mark only scrubs again; a scrub
    that another process's lock prevents is left, with a WARNING, to the next opening."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        if cursor.execute("PRAGMA user_version").fetchone()[0] >= _SCRUBBED:
            return
        try:
            cursor.execute("VACUUM")
        except sqlite3.OperationalError as error:  # busy: another process is writing
            _not_scrubbed(str(error))
            return
    finally:
        connection.close()
    # The rebuilt pages are in the WAL until a checkpoint moves them into the file: a
    # reader in another process (a reconcile, a backup, an old worker) holds them there.
    # Marked only once the file itself is rebuilt, so that the next opening tries again.
    if not _checkpoint(engine):
        _not_scrubbed("another process is reading it")
        return
    with _raw_transaction(engine) as cursor:
        cursor.execute(f"PRAGMA user_version={_SCRUBBED}")


def _not_scrubbed(reason: str) -> None:
    logger.warning(
        "the store could not be scrubbed of the plain values an earlier version left in"
        " its free space (%s): the next opening tries again",
        reason,
    )


@contextmanager
def _raw_transaction(engine: sa.Engine, *, begin: str | None = None) -> Iterator[Any]:
    """The driver's own cursor, in one transaction (opened with ``begin``, if given):
    committed when the block ends, rolled back if it raises."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        if begin is not None:
            cursor.execute(begin)
        yield cursor
        cursor.close()
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        connection.close()


def _key_table(cursor: Any, table: str, key: TrailKey) -> int:
    present = {row[1] for row in cursor.execute(f'PRAGMA table_info("{table}")')}
    if _PLAIN_COLUMN in present and "subject_digest" not in present:
        cursor.execute(f'ALTER TABLE "{table}" RENAME COLUMN {_PLAIN_COLUMN} TO subject_digest')
    elif "subject_digest" not in present:
        cursor.execute(f'ALTER TABLE "{table}" ADD COLUMN subject_digest VARCHAR(64)')
    if "subject_key" not in present:
        cursor.execute(f'ALTER TABLE "{table}" ADD COLUMN subject_key VARCHAR(16)')
    return _rewrite_unmarked(
        cursor, table, ("subject_digest", "subject_key"), key=key, rewrite=key.digest
    )


def _seal_table(cursor: Any, table: str, key: TrailKey) -> int:
    present = {row[1] for row in cursor.execute(f'PRAGMA table_info("{table}")')}
    if "commitment_key" not in present:  # older still: `_add_missing_columns` adds both
        return 0
    if "sealed_by" not in present:
        cursor.execute(f'ALTER TABLE "{table}" ADD COLUMN sealed_by VARCHAR(16)')

    def seal(request_id: str | None, plain: str) -> str:
        return key.seal(plain, context=_seal_context(table, request_id))

    return _rewrite_unmarked(
        cursor, table, ("commitment_key", "sealed_by"), key=key, rewrite=seal, context="request_id"
    )


def _key_pseudonyms(cursor: Any, key: TrailKey) -> int:
    present = {row[1] for row in cursor.execute('PRAGMA table_info("served")')}
    if "subject_pseudonym" not in present:  # older still: `_add_missing_columns` adds both
        return 0
    if "pseudonym_key" not in present:
        cursor.execute('ALTER TABLE "served" ADD COLUMN pseudonym_key VARCHAR(16)')
    return _rewrite_unmarked(cursor, "served", _PSEUDONYM_COLUMNS, key=key, rewrite=key.pseudonym)


def _rewrite_unmarked(
    cursor: Any,
    table: str,
    columns: tuple[str, str],
    *,
    key: TrailKey,
    rewrite: Callable[..., str],
    context: str | None = None,
) -> int:
    """Set each value of ``columns[0]`` in ``table`` whose marker (``columns[1]``) is
    NULL to ``rewrite`` of it (given first the row's ``context`` column, if named), and
    the marker to ``key.id``, in a statement that only a NULL marker matches: no row is
    rewritten twice. How many rows were."""
    column, marker = columns
    reads = column if context is None else f"{context}, {column}"
    unmarked = cursor.execute(
        f'SELECT rowid, {reads} FROM "{table}" WHERE {marker} IS NULL AND {column} IS NOT NULL'
    ).fetchall()
    cursor.executemany(
        f'UPDATE "{table}" SET {column} = ?, {marker} = ? WHERE rowid = ? AND {marker} IS NULL',
        [(rewrite(*values), key.id, rowid) for rowid, *values in unmarked],
    )
    return len(unmarked)


def _count_under_other_keys(engine: sa.Engine, key: TrailKey) -> int:
    with engine.connect() as connection:
        return sum(
            int(
                connection.execute(
                    sa.select(sa.func.count())
                    .select_from(table)
                    .where(table.c.subject_key.is_not(None), table.c.subject_key != key.id)
                ).scalar_one()
            )
            for table in _TRAIL_TABLES
        )


def _warn_of_other_keys(engine: sa.Engine, *, key: TrailKey, path: Path, created: bool) -> None:
    """A WARNING, at every opening, while the trail keeps digests under a key that is not
    ``path``'s: those subjects can no longer be found (decision 0064)."""
    others = _count_under_other_keys(engine, key)
    if not others:
        return
    cause = (
        "was missing and a new one was made" if created else "is not the one they were made under"
    )
    logger.warning(
        "%d trail row(s) keep their subject digest under another trail key than %s (key"
        " %s), which %s: the trail cannot find their subjects any more. Stop the adapter"
        " and restore the key from the backup taken with the store; rows keyed since"
        " under this key are then the ones that cannot be found",
        others,
        path,
        key.id,
        cause,
    )
