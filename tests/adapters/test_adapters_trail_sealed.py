"""A copy of ``records.db`` alone names no subject of the trail (decision 0064 and its
follow-up): the one-time key of each commitment is sealed under the trail key, since
in clear it opens the commitment against the records beside it, and a commitment that
opens names its row's subject; and the values the store replaces (plain digests, plain
keys) do not stay in the file's free space, whatever the SQLite build's default for
``secure_delete``."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import Pool

from onceonly.adapters import RecordStore, _commitment, create_provider_app, load_config
from onceonly.adapters._store import TRAIL_KEY_FILE, ReceiptRow, ServedEntry

from tests.adapters.adapter_testing import (
    CONSUMER,
    ITEM,
    PURPOSE,
    RECORD,
    HubDouble,
    serve,
    sha256_b64url,
    write_config,
)

SUBJECTS = ("38001085718", "49002124277", "37605030299")


def rows(path: Path, query: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as database:
        return database.execute(query, parameters).fetchall()


def _opened_by_the_file_alone(path: Path) -> list[tuple[str, str]]:
    """Each (request id, subject) that ``path``'s own columns link: a served row's
    commitment opened, under the key kept beside it, by a record of the same file."""
    records = rows(path, "SELECT subject, record FROM records")
    served = rows(path, "SELECT request_id, commitment, commitment_key FROM served")
    return [
        (request_id, subject)
        for request_id, commitment, key in served
        for subject, record in records
        if commitment and _commitment.opens(commitment, key=key or "", record=json.loads(record))
    ]


def query(url: str, subject: str, token: str) -> int:
    """The status of the adapter's answer to the hub's query about ``subject`` over HTTP."""
    body = {"subject": subject, "purpose": PURPOSE, "consumer": CONSUMER, "version": 1}
    answer = httpx.post(
        f"{url}/v1/items/{ITEM}/records/query",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    )
    return answer.status_code


@pytest.fixture
def adapter(tmp_path: Path, hub: HubDouble) -> Iterator[tuple[str, Path]]:
    """An adapter serving ``ITEM`` for three subjects on loopback: its URL and data_dir."""
    config = load_config(write_config(tmp_path, hub_url=hub.url))
    with RecordStore(config.store_path) as store:
        for number, subject in enumerate(SUBJECTS):
            store.put(ITEM, subject, {**RECORD, "street": f"Pikk {number}"})
    with serve(create_provider_app(config)) as url:
        yield url, config.data_dir


def test_a_copy_of_the_store_alone_links_no_served_row_to_a_subject(
    adapter: tuple[str, Path], hub: HubDouble
) -> None:
    url, data_dir = adapter
    for subject in SUBJECTS:
        assert query(url, subject, hub.request_token(subject, request_id=f"r-{subject}")) == 200
    store_path = data_dir / "records.db"

    assert _opened_by_the_file_alone(store_path) == []
    with RecordStore(store_path) as store:  # with the trail key, each opens its own record
        trail = store.served_entries()
        opened = [
            (entry.request_id, subject)
            for entry in trail
            for subject in SUBJECTS
            if _commitment.opens(
                entry.commitment or "",
                key=entry.commitment_key or "",
                record=store.get(ITEM, subject),
            )
        ]
    assert opened == [(f"r-{subject}", subject) for subject in SUBJECTS]


def test_a_receipt_keeps_its_commitment_key_sealed_and_reads_it_back(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    key = _commitment.new_key()
    with RecordStore(path) as store:
        store.record_receipt(
            ReceiptRow(
                request_id="r1",
                item=ITEM,
                purpose=PURPOSE,
                subject_sha256=sha256_b64url(SUBJECTS[0]),
                index=1,
                leaf_hash="h",
                commitment=_commitment.commit(key, RECORD),
                commitment_key=key,
            )
        )
        assert [r.commitment_key for r in store.receipts()] == [key]
        key_id = store.trail_key.id
    ((kept, sealed_by),) = rows(path, "SELECT commitment_key, sealed_by FROM receipts")
    assert (kept != key, sealed_by) == (True, key_id)
    assert key.encode() not in path.read_bytes()


def test_a_sealed_key_moved_to_another_row_does_not_open(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    with RecordStore(path) as store:
        store.record_served_many([_served("r1"), _served("r2")])
    with closing(sqlite3.connect(path)) as database, database:
        database.execute(
            "UPDATE served SET commitment_key ="
            " (SELECT commitment_key FROM served WHERE request_id = 'r1')"
            " WHERE request_id = 'r2'"
        )
    with RecordStore(path) as store:
        assert [e.commitment_key is None for e in store.served_entries()] == [False, True]


def test_a_lost_trail_key_leaves_the_commitment_keys_sealed(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    with RecordStore(path) as store:
        store.record_served_many([_served("r1")])
    (tmp_path / TRAIL_KEY_FILE).unlink()
    with RecordStore(path) as store:
        assert [e.commitment_key for e in store.served_entries()] == [None]


def _served(request_id: str, **change: Any) -> ServedEntry:
    key = _commitment.new_key()
    values: dict[str, Any] = {
        "request_id": request_id,
        "time": "2026-12-07T10:00:00.000Z",
        "item": ITEM,
        "consumer": CONSUMER,
        "purpose": PURPOSE,
        "subject_sha256": sha256_b64url(SUBJECTS[0]),
        "outcome": "ok",
        "reason": None,
        "commitment": _commitment.commit(key, RECORD),
        "commitment_key": key,
        **change,
    }
    return ServedEntry(**values)


def _keyed_store_with_plain_keys(path: Path) -> dict[str, str]:
    """A store as decision 0064's version left it: digests keyed, commitment keys in
    clear (no ``sealed_by``). The plain keys, by request id."""
    with RecordStore(path):
        pass
    keys = {f"r{n}": _commitment.new_key() for n in range(3)}
    with closing(sqlite3.connect(path)) as database, database:
        database.execute("ALTER TABLE served DROP COLUMN sealed_by")
        database.execute("ALTER TABLE receipts DROP COLUMN sealed_by")
        database.executemany(
            "INSERT INTO served (request_id, time, item, outcome, commitment, commitment_key)"
            " VALUES (?, 't', ?, 'ok', 'hmac-sha256:c', ?)",
            [(rid, ITEM, key) for rid, key in keys.items() if rid != "r2"],
        )
        database.execute(
            "INSERT INTO receipts (request_id, time, item, purpose, subject_digest, log_index,"
            " leaf_hash, commitment, commitment_key) VALUES ('r2', 't', ?, ?, 'd', 4, 'h',"
            " 'hmac-sha256:c', ?)",
            (ITEM, PURPOSE, keys["r2"]),
        )
    return keys


_KEPT = (
    "SELECT request_id, commitment_key, sealed_by FROM served UNION ALL"
    " SELECT request_id, commitment_key, sealed_by FROM receipts ORDER BY 1"
)


def test_plain_commitment_keys_are_sealed_once_however_often_the_store_is_opened(
    tmp_path: Path,
) -> None:
    path = tmp_path / "records.db"
    keys = _keyed_store_with_plain_keys(path)
    with RecordStore(path) as store:
        first = rows(path, _KEPT)
        key_id = store.trail_key.id
    with RecordStore(path) as store:
        assert rows(path, _KEPT) == first  # nothing sealed twice
        read = {e.request_id: e.commitment_key for e in store.served_entries()}
        read.update({r.request_id: r.commitment_key for r in store.receipts()})
    assert read == keys
    assert [(rid, sealed_by) for rid, _, sealed_by in first] == [
        ("r0", key_id),
        ("r1", key_id),
        ("r2", key_id),
    ]
    held = path.read_bytes() + _wal(path)
    assert [rid for rid, key in keys.items() if key.encode() in held] == []


def test_an_interrupted_sealing_leaves_every_key_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    keys = _keyed_store_with_plain_keys(path)
    with closing(sqlite3.connect(path)) as database, database:
        database.execute(
            "CREATE TRIGGER interrupt BEFORE UPDATE ON receipts"
            " BEGIN SELECT RAISE(ABORT, 'interrupted'); END"
        )

    with pytest.raises(sqlite3.IntegrityError, match="interrupted"):
        RecordStore(path)

    kept = rows(path, "SELECT request_id, commitment_key FROM served ORDER BY id")
    assert kept == [("r0", keys["r0"]), ("r1", keys["r1"])]  # the served rows: not sealed
    assert "sealed_by" not in [row[1] for row in rows(path, "PRAGMA table_info(served)")]
    with closing(sqlite3.connect(path)) as database, database:
        database.execute("DROP TRIGGER interrupt")
    with RecordStore(path) as store:
        assert [e.commitment_key for e in store.served_entries()] == [keys["r0"], keys["r1"]]
        assert [r.commitment_key for r in store.receipts()] == [keys["r2"]]


# --- the file's free space ----------------------------------------------------------


def _secure_delete_off(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    dbapi_connection.execute("PRAGMA secure_delete=OFF")


@pytest.fixture
def secure_delete_off_by_default() -> Iterator[None]:
    """Every pool's connections start with secure_delete off, as most SQLite builds'
    do (Debian's has it on): the store must set it itself (its own listener runs after
    this class-wide one)."""
    sa.event.listen(Pool, "connect", _secure_delete_off, insert=True)
    try:
        yield
    finally:
        sa.event.remove(Pool, "connect", _secure_delete_off)


def _wal(path: Path) -> bytes:
    wal = path.with_name(path.name + "-wal")
    return wal.read_bytes() if wal.exists() else b""


def _old_store(path: Path, claims: list[str]) -> None:
    """A store as adapters before decision 0064 wrote it: plain SHA-256 claims."""
    with closing(sqlite3.connect(path)) as old, old:
        old.execute("PRAGMA secure_delete=OFF")
        old.execute(
            "CREATE TABLE served (id INTEGER PRIMARY KEY AUTOINCREMENT, request_id VARCHAR(64),"
            " time VARCHAR(32) NOT NULL, item VARCHAR(128) NOT NULL, consumer VARCHAR(128),"
            " purpose VARCHAR(64), subject_sha256 VARCHAR(64), outcome VARCHAR(16) NOT NULL,"
            " reason VARCHAR(64), commitment VARCHAR(64), commitment_key VARCHAR(64),"
            " subject_pseudonym VARCHAR(64))"
        )
        old.executemany(
            "INSERT INTO served (request_id, time, item, consumer, purpose, subject_sha256,"
            " outcome) VALUES (?, '2026-12-07T10:00:00.000Z', ?, ?, ?, ?, 'ok')",
            [(uuid.uuid4().hex, ITEM, CONSUMER, PURPOSE, claim) for claim in claims],
        )


@pytest.mark.usefixtures("secure_delete_off_by_default")
def test_upgrading_an_old_store_leaves_no_plain_claim_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    claims = [sha256_b64url(f"{38001085718 + n}") for n in range(300)]
    _old_store(path, claims)
    with RecordStore(path) as store:
        assert len(store.served_entries()) == 300
    held = path.read_bytes() + _wal(path)  # as the store left them: a copy taken now
    assert [claim for claim in claims if claim.encode() in held] == []


@pytest.mark.usefixtures("secure_delete_off_by_default")
def test_a_plain_row_keyed_later_leaves_no_plain_claim_in_the_file(tmp_path: Path) -> None:
    """Once the file has been scrubbed, what frees space is secure_delete: rows an
    earlier version wrote into a keyed store (a downgrade and back) are keyed at the
    next opening, and their plain claims are zeroed where they were."""
    path = tmp_path / "records.db"
    RecordStore(path).close()
    claims = [sha256_b64url(f"{49002124277 + n}") for n in range(300)]
    with closing(sqlite3.connect(path)) as old_version, old_version:
        old_version.execute("PRAGMA secure_delete=OFF")
        old_version.executemany(
            "INSERT INTO served (request_id, time, item, subject_digest, outcome)"
            " VALUES (?, 't', ?, ?, 'ok')",
            [(uuid.uuid4().hex, ITEM, claim) for claim in claims],
        )
    with closing(sqlite3.connect(path)) as database:
        database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with RecordStore(path) as store:
        assert len(store.served_entries()) == 300
    held = path.read_bytes() + _wal(path)
    assert [claim for claim in claims if claim.encode() in held] == []


@pytest.mark.usefixtures("secure_delete_off_by_default")
def test_deleted_records_leave_no_subject_in_the_file(tmp_path: Path) -> None:
    """What the store deletes itself is zeroed where it was (secure_delete): a
    department's deleted records, and the changes that announced their deletion."""
    path = tmp_path / "records.db"
    subjects = [f"{38001085718 + n}" for n in range(200)]
    with RecordStore(path) as store:
        for subject in subjects:
            store.put(ITEM, subject, {**RECORD, "street": f"Pikk {subject}"}, announce=False)
        for subject in subjects:
            store.delete(ITEM, subject)
        store.forget_changes([change.id for change in store.pending_changes(limit=1000)])
    with closing(sqlite3.connect(path)) as database:
        assert database.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    held = path.read_bytes()
    assert [subject for subject in subjects if subject.encode() in held] == []


@pytest.mark.usefixtures("secure_delete_off_by_default")
def test_an_upgrade_while_another_process_reads_is_scrubbed_at_the_next_opening(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A reader in another process (a reconcile, a backup, an old worker) holds the WAL:
    the rebuilt file stays in it, so the file is not marked scrubbed and the next
    opening finishes the job (a hostile review: the file was marked, and kept every
    plain value for good)."""
    path = tmp_path / "records.db"
    claims = [sha256_b64url(f"{38001085718 + n}") for n in range(300)]
    _old_store(path, claims)
    with closing(sqlite3.connect(path)) as database:
        database.execute("PRAGMA journal_mode=WAL")
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM served").fetchall()
        with caplog.at_level("WARNING", logger="adapters.store"), RecordStore(path):
            pass
        assert rows(path, "PRAGMA user_version") == [(0,)]  # not marked: not done
        assert any("another process is reading it" in r.getMessage() for r in caplog.records)
    finally:
        reader.close()
    with RecordStore(path):
        pass
    assert rows(path, "PRAGMA user_version") == [(1,)]
    held = path.read_bytes() + _wal(path)
    assert [claim for claim in claims if claim.encode() in held] == []


# --- the hub's pseudonym (0064's second follow-up) -------------------------------------

PSEUDONYMS = {subject: f"{number:02x}" * 32 for number, subject in enumerate(SUBJECTS, 0x5A)}


def test_a_served_query_leaves_the_hubs_pseudonym_nowhere_in_the_file(
    adapter: tuple[str, Path], hub: HubDouble
) -> None:
    """A department client learns the pseudonyms of the subjects it asked about (its
    own audit entries name them): kept in clear, each would name its served row's
    subject to anyone holding a copy of records.db, whose records list the subjects."""
    url, data_dir = adapter
    for subject, pseudonym in PSEUDONYMS.items():
        token = hub.request_token(subject, request_id=f"r-{subject}", subject_pseudonym=pseudonym)
        assert query(url, subject, token) == 200
    store_path = data_dir / "records.db"

    held = store_path.read_bytes() + _wal(store_path)  # a copy taken while it serves
    assert [p for p in PSEUDONYMS.values() if p.encode() in held] == []
    with RecordStore(store_path) as store:
        keyed = [e.subject_pseudonym for e in store.served_entries()]
        assert keyed == [store.trail_key.pseudonym(p) for p in PSEUDONYMS.values()]


def _store_with_plain_pseudonyms(path: Path) -> list[str]:
    """A store as 0064's first follow-up left it: pseudonyms in clear, no
    ``pseudonym_key``, written with secure_delete off. The pseudonyms, by row."""
    with RecordStore(path):
        pass
    pseudonyms = [f"{n:064x}" for n in range(0xA0, 0xA0 + 200)]
    with closing(sqlite3.connect(path)) as old, old:
        old.execute("PRAGMA secure_delete=OFF")
        old.execute("ALTER TABLE served DROP COLUMN pseudonym_key")
        old.executemany(
            "INSERT INTO served (request_id, time, item, outcome, subject_pseudonym)"
            " VALUES (?, 't', ?, 'ok', ?)",
            [(f"r{n}", ITEM, pseudonym) for n, pseudonym in enumerate(pseudonyms)],
        )
        old.execute("PRAGMA user_version=1")  # scrubbed, as that version marked it
    with closing(sqlite3.connect(path)) as database:
        database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return pseudonyms


_PSEUDONYMS_KEPT = "SELECT request_id, subject_pseudonym, pseudonym_key FROM served ORDER BY id"


@pytest.mark.usefixtures("secure_delete_off_by_default")
def test_plain_pseudonyms_are_keyed_once_and_scrubbed_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    pseudonyms = _store_with_plain_pseudonyms(path)
    with RecordStore(path) as store:
        first = rows(path, _PSEUDONYMS_KEPT)
        key = store.trail_key
    with RecordStore(path) as store:
        assert rows(path, _PSEUDONYMS_KEPT) == first  # nothing keyed twice
        read = [e.subject_pseudonym for e in store.served_entries()]
    assert first == [(f"r{n}", key.pseudonym(p), key.id) for n, p in enumerate(pseudonyms)]
    assert read == [key.pseudonym(p) for p in pseudonyms]
    held = path.read_bytes() + _wal(path)
    assert [p for p in pseudonyms if p.encode() in held] == []


def test_an_interrupted_keying_leaves_every_pseudonym_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    pseudonyms = _store_with_plain_pseudonyms(path)
    with closing(sqlite3.connect(path)) as database, database:
        database.execute(
            "CREATE TRIGGER interrupt BEFORE UPDATE ON served WHEN NEW.request_id = 'r150'"
            " BEGIN SELECT RAISE(ABORT, 'interrupted'); END"
        )

    with pytest.raises(sqlite3.IntegrityError, match="interrupted"):
        RecordStore(path)

    kept = rows(path, "SELECT subject_pseudonym FROM served ORDER BY id")
    assert [p for (p,) in kept] == pseudonyms
    assert "pseudonym_key" not in [row[1] for row in rows(path, "PRAGMA table_info(served)")]


def test_a_pseudonym_under_another_trail_key_reads_back_as_none(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    with RecordStore(path) as store:
        store.record_served_many([_served("r1", subject_pseudonym="c3" * 32)])
    (path.parent / TRAIL_KEY_FILE).unlink()
    with RecordStore(path) as store:  # a new key: that pseudonym can no longer be compared
        assert [e.subject_pseudonym for e in store.served_entries()] == [None]
