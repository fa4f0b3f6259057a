"""Short SQLite writes on the event loop's own thread, when SQLite's lock is free now.

Every ``db.write_in_one_call`` on SQLite is a trip to aiosqlite's thread and back: the
loop wakes the thread, the thread takes the GIL for each statement (waiting while the
loop runs Python), and the loop wakes again for the result. For a record query's DPoP
spend, a one-row insert and a one-row read committed without a flush of its own
(decision 0043), the trip costs more than the write: at half the hub's maximum rate the
spend waited 1.2 ms at the median (0.6 ms of it the trip) for about 0.1 ms of work
(docs/performance.md, ninth round).

So such a write may run here, on the loop's thread, with a connection of its own, on
one condition: it never waits. The write gate of ``onceonly.hub.db`` is tried without
waiting, the connection's busy timeout is 0, and a write that would have to wait (the
audit writer's commit holds the lock, a session writes, another process does), or that
fails for any reason, is not done here: the caller takes the usual way, to the thread,
which waits, or reports the error as it always did. Nothing is half done: a write here
commits or rolls back before :meth:`LoopWriter.try_write` returns.

The connection commits with ``synchronous=NORMAL`` (in WAL mode: the commit is appended
to the log without an fsync; the next flushed commit flushes it too), so only writes
that may wait for another commit's flush belong here. It never checkpoints the log
itself (``wal_autocheckpoint=0``): a checkpoint copies pages and flushes the database
file, which must not stop the loop; the pooled connections' commits checkpoint as
before. Only for a database file in WAL mode; anything else (in memory, PostgreSQL)
makes every :meth:`LoopWriter.try_write` answer "not here".
"""

import logging
import os
import sqlite3
import struct
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from onceonly.hub import db as databases

T = TypeVar("T")

log = logging.getLogger("onceonly.db")

_PRAGMAS = (
    "synchronous=NORMAL",
    "foreign_keys=ON",
    "busy_timeout=0",
    "wal_autocheckpoint=0",
    databases.SECURE_DELETE,  # as the pool's connections (onceonly.hub.db)
)


class LoopWriter:
    """``open()`` and ``close()`` on the event loop's thread, which alone uses it."""

    def __init__(self, engine: AsyncEngine) -> None:
        url = engine.url
        on_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
        # A URL with parameters (``?mode=ro&uri=true``) is the pool's to interpret: the
        # loop's connection would open the file otherwise, and take another gate.
        self._path = url.database if on_file and not url.query else None
        self._shm: int | None = None
        self._db: sqlite3.Connection | None = None
        self._gate: databases.WriteGate | None = None
        self.done = 0  # writes committed here
        self.passed = 0  # writes handed back to the caller ("not here")

    @property
    def open_here(self) -> bool:
        return self._db is not None

    def open(self) -> None:
        """Connect, if the database is a file in WAL mode; otherwise stay closed."""
        if self._path is None or self._db is not None:
            return
        try:
            # One thread uses it (the loop's); stop() may run where start() did not. No
            # wait for a lock, from the first statement on (the default waits 5 s).
            connection = sqlite3.connect(
                self._path, timeout=0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as error:
            log.warning("no writes on the event loop: cannot open the database (%s)", error)
            return
        try:
            for pragma in _PRAGMAS:
                connection.execute(f"PRAGMA {pragma}")
            (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
        except sqlite3.Error as error:
            connection.close()
            log.warning("no writes on the event loop: cannot set the connection up (%s)", error)
            return
        if str(mode).lower() != "wal":  # NORMAL is only as durable as the next FULL in WAL
            connection.close()
            return
        try:
            self._shm = os.open(self._path + "-shm", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            connection.close()
            log.warning("no writes on the event loop: cannot read the WAL index (%s)", error)
            return
        self._gate = databases.write_gate(self._path)
        self._db = connection

    def close(self) -> None:
        connection, self._db = self._db, None
        if connection is not None:
            connection.close()
        shm, self._shm = self._shm, None
        if shm is not None:
            os.close(shm)

    def try_write(self, work: Callable[[sqlite3.Connection], T]) -> tuple[bool, T | None]:
        """``(True, result)`` if ``work`` ran and committed here, now; ``(False, None)``
        if it did not run here (closed, the lock taken, or any error: nothing stays)."""
        connection, gate = self._db, self._gate
        if connection is None or gate is None or self._restarts_log() or not gate.try_enter():
            self.passed += 1
            return False, None
        try:
            result = self._commit(connection, work)
        finally:
            gate.leave()
        if result is _NOT_HERE:
            self.passed += 1
            return False, None
        self.done += 1
        return True, result  # type: ignore[return-value]

    def _restarts_log(self) -> bool:
        """Whether the next write would start the WAL afresh: every frame of it is in the
        database file (``nBackfill == mxFrame``, read from the WAL index). That writer
        writes and flushes a new WAL header, whatever ``synchronous`` says: an fsync,
        which must not run on the loop (a review measured 90-124 ms under a busy disk).
        The read is not locked; a stale answer only sends one batch the other way, or
        lets one such flush through."""
        shm = self._shm
        try:
            header = b"" if shm is None else os.pread(shm, _WAL_INDEX_READ, 0)
        except OSError:
            return True
        if len(header) < _WAL_INDEX_READ:
            return True
        (frames,) = _U32.unpack_from(header, _MX_FRAME)
        (backfilled,) = _U32.unpack_from(header, _N_BACKFILL)
        return bool(backfilled == frames)

    def _commit(
        self, connection: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]
    ) -> object:
        try:
            connection.execute("BEGIN IMMEDIATE")  # SQLITE_BUSY at once if another holds it
        except sqlite3.Error:
            return _NOT_HERE
        try:
            result = work(connection)
            connection.execute("COMMIT")
        except BaseException as error:
            self._roll_back(connection)
            if isinstance(error, sqlite3.Error):
                return _NOT_HERE  # the thread's way tries again, and reports it if it stays
            raise
        return result

    def _roll_back(self, connection: sqlite3.Connection) -> None:
        try:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
        except sqlite3.Error:  # a connection in an unknown state is not used again
            log.warning("no more writes on the event loop: a rollback failed", exc_info=True)
            self.close()


_NOT_HERE = object()

# The WAL index (the ``-shm`` file, in the machine's byte order): the header's mxFrame,
# the frames in the WAL, and the checkpoint information's nBackfill, those of them
# copied to the database file (sqlite.org/walformat.html, section 2.1).
_U32 = struct.Struct("=I")
_MX_FRAME, _N_BACKFILL, _WAL_INDEX_READ = 16, 96, 100
