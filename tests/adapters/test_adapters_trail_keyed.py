"""The trail keeps a keyed digest of each subject, HMAC-SHA-256 under the store's trail
key of the subject's SHA-256 (decision 0064): never the SHA-256, which enumeration of the
few possible identifiers reverses."""

from __future__ import annotations

import hashlib
import hmac
import logging
import sqlite3
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from onceonly.adapters import ConfigError, RecordStore, base64url, create_provider_app, load_config
from onceonly.adapters._reconcile import compare
from onceonly.adapters._store import TRAIL_KEY_FILE, ReceiptRow, ReceivedEvent, ServedEntry

from tests.adapters.adapter_testing import (
    CONSUMER,
    ITEM,
    PURPOSE,
    RECORD,
    SUBJECT,
    HubDouble,
    serve,
    sha256_b64url,
    write_config,
)

OTHER = "49002124277"
PSEUDONYM = "a1" * 32


def keyed(key_file: Path, subject: str) -> str:
    """HMAC-SHA-256 under the key in ``key_file`` of the subject's SHA-256 (base64url):
    what docs/adapters.md tells an operator to compute to search the trail."""
    key = bytes.fromhex(key_file.read_text().strip())
    mac = hmac.new(key, sha256_b64url(subject).encode(), hashlib.sha256).digest()
    return base64url.encode(mac)


def rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as database:
        return database.execute(query).fetchall()


def served(subject: str | None, **change: Any) -> ServedEntry:
    values: dict[str, Any] = {
        "request_id": uuid.uuid4().hex,
        "time": "2026-12-07T10:00:00.000Z",
        "item": ITEM,
        "consumer": CONSUMER,
        "purpose": PURPOSE,
        "subject_sha256": None if subject is None else sha256_b64url(subject),
        "outcome": "ok",
        "reason": None,
        "subject_pseudonym": PSEUDONYM,
        **change,
    }
    return ServedEntry(**values)


@pytest.fixture
def adapter(tmp_path: Path, hub: HubDouble) -> Iterator[tuple[str, Path]]:
    """An adapter serving ``ITEM`` from its store on loopback: its URL and data_dir."""
    config = load_config(write_config(tmp_path, hub_url=hub.url))
    with RecordStore(config.store_path) as store:
        store.put(ITEM, SUBJECT, RECORD)
    with serve(create_provider_app(config)) as url:
        yield url, config.data_dir


def test_a_query_served_over_http_leaves_the_keyed_digest_in_the_trail(
    adapter: tuple[str, Path], hub: HubDouble
) -> None:
    url, data_dir = adapter
    body = {"subject": SUBJECT, "purpose": PURPOSE, "consumer": CONSUMER, "version": 1}
    token = hub.request_token(request_id="r-keyed")
    answer = httpx.post(
        f"{url}/v1/items/{ITEM}/records/query",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200

    store_path = data_dir / "records.db"
    ((digest, key_id),) = rows(store_path, "SELECT subject_digest, subject_key FROM served")
    assert digest == keyed(data_dir / TRAIL_KEY_FILE, SUBJECT)
    assert digest != sha256_b64url(SUBJECT)
    columns = [row[1] for row in rows(store_path, "PRAGMA table_info(served)")]
    assert "subject_sha256" not in columns  # no column says it holds a plain SHA-256
    with RecordStore(store_path) as store:
        assert key_id == store.trail_key.id
        assert [entry.request_id for entry in store.served_about(SUBJECT)] == ["r-keyed"]
        assert store.served_about(OTHER) == []


def test_received_events_and_receipts_keep_the_keyed_digest(tmp_path: Path) -> None:
    with RecordStore(tmp_path / "records.db") as store:
        store.record_received_event(
            ReceivedEvent(
                event_id="e1",
                item=ITEM,
                kind="changed",
                owner="civil-registry",
                subject_sha256=sha256_b64url(SUBJECT),
                received_at="2026-12-07T10:00:00.000Z",
            )
        )
        store.record_receipt(
            ReceiptRow(
                request_id="r1",
                item=ITEM,
                purpose=PURPOSE,
                subject_sha256=sha256_b64url(SUBJECT),
                index=1,
                leaf_hash="h",
            )
        )
        expected = store.trail_digest(SUBJECT)
        assert [e.subject_digest for e in store.received_events()] == [expected]
        assert [r.subject_digest for r in store.receipts()] == [expected]
    assert expected == keyed(tmp_path / TRAIL_KEY_FILE, SUBJECT)
    for table in ("received_events", "receipts"):
        assert rows(tmp_path / "records.db", f"SELECT subject_digest FROM {table}") == [(expected,)]


def _old_store(path: Path) -> None:
    """A store as adapters before decision 0064 wrote it: plain SHA-256 digests."""
    with sqlite3.connect(path) as old:
        old.executescript(
            "CREATE TABLE served (id INTEGER PRIMARY KEY AUTOINCREMENT, request_id VARCHAR(64),"
            " time VARCHAR(32) NOT NULL, item VARCHAR(128) NOT NULL, consumer VARCHAR(128),"
            " purpose VARCHAR(64), subject_sha256 VARCHAR(64), outcome VARCHAR(16) NOT NULL,"
            " reason VARCHAR(64), commitment VARCHAR(64), commitment_key VARCHAR(64),"
            " subject_pseudonym VARCHAR(64));"
            "CREATE TABLE received_events (event_id VARCHAR(64) PRIMARY KEY,"
            " item VARCHAR(128) NOT NULL, kind VARCHAR(16) NOT NULL, owner VARCHAR(128) NOT NULL,"
            " subject_sha256 VARCHAR(64) NOT NULL, received_at VARCHAR(32) NOT NULL);"
            "CREATE TABLE receipts (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " request_id VARCHAR(64) NOT NULL, time VARCHAR(32) NOT NULL,"
            " item VARCHAR(128) NOT NULL, purpose VARCHAR(64) NOT NULL,"
            " subject_sha256 VARCHAR(64) NOT NULL, log_index INTEGER NOT NULL,"
            " leaf_hash VARCHAR(64) NOT NULL, commitment VARCHAR(64), commitment_key VARCHAR(64));"
        )
        old.executemany(
            "INSERT INTO served (request_id, time, item, subject_sha256, outcome)"
            " VALUES (?, 't', ?, ?, ?)",
            [
                ("r1", ITEM, sha256_b64url(SUBJECT), "ok"),
                ("r2", ITEM, sha256_b64url(OTHER), "ok"),
                ("r3", ITEM, None, "refused"),  # refused before the token named a subject
            ],
        )
        old.execute(
            "INSERT INTO received_events VALUES ('e1', ?, 'changed', 'civil-registry', ?, 't')",
            (ITEM, sha256_b64url(SUBJECT)),
        )
        old.execute(
            "INSERT INTO receipts (request_id, time, item, purpose, subject_sha256, log_index,"
            " leaf_hash) VALUES ('r9', 't', ?, ?, ?, 4, 'h')",
            (ITEM, PURPOSE, sha256_b64url(OTHER)),
        )


_DIGESTS = (
    "SELECT 'served', request_id, subject_digest, subject_key FROM served UNION ALL"
    " SELECT 'received', event_id, subject_digest, subject_key FROM received_events UNION ALL"
    " SELECT 'receipt', request_id, subject_digest, subject_key FROM receipts ORDER BY 1, 2"
)


def test_an_old_store_is_keyed_once_however_often_it_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    _old_store(path)
    with RecordStore(path) as store:
        first = rows(path, _DIGESTS)
    with RecordStore(path) as store:  # the migration again: nothing left to key
        assert rows(path, _DIGESTS) == first
        key_id = store.trail_key.id
        assert [e.request_id for e in store.served_about(SUBJECT)] == ["r1"]
        assert [e.request_id for e in store.served_about(OTHER)] == ["r2"]
    key_file = tmp_path / TRAIL_KEY_FILE
    assert first == [
        ("receipt", "r9", keyed(key_file, OTHER), key_id),
        ("received", "e1", keyed(key_file, SUBJECT), key_id),
        ("served", "r1", keyed(key_file, SUBJECT), key_id),
        ("served", "r2", keyed(key_file, OTHER), key_id),
        ("served", "r3", None, None),
    ]


def test_a_plain_row_written_after_the_migration_is_keyed_alone(tmp_path: Path) -> None:
    """A row an earlier version wrote into a keyed store (a downgrade and back) has no
    key id: the next opening keys it, and only it."""
    path = tmp_path / "records.db"
    with RecordStore(path) as store:
        store.record_served_many([served(SUBJECT, request_id="r1")])
    with sqlite3.connect(path) as old_version:
        old_version.execute(
            "INSERT INTO served (request_id, time, item, subject_digest, outcome)"
            " VALUES ('r2', 't', ?, ?, 'ok')",
            (ITEM, sha256_b64url(SUBJECT)),
        )
    with RecordStore(path) as store:
        assert [e.request_id for e in store.served_about(SUBJECT)] == ["r1", "r2"]


def test_an_interrupted_migration_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    """The migration is one transaction: a failure in its last table (a trigger refusing
    the update stands for a crash) leaves every table plain, with its old column, and
    the next opening keys each row once."""
    path = tmp_path / "records.db"
    _old_store(path)
    with sqlite3.connect(path) as database:
        database.execute(
            "CREATE TRIGGER interrupt BEFORE UPDATE ON receipts"
            " BEGIN SELECT RAISE(ABORT, 'interrupted'); END"
        )
    before = rows(path, "SELECT request_id, subject_sha256 FROM served ORDER BY id")

    with pytest.raises(sqlite3.IntegrityError, match="interrupted"):
        RecordStore(path)

    assert rows(path, "SELECT request_id, subject_sha256 FROM served ORDER BY id") == before
    with sqlite3.connect(path) as database:
        database.execute("DROP TRIGGER interrupt")
    with RecordStore(path) as store:
        assert [e.request_id for e in store.served_about(SUBJECT)] == ["r1"]
        assert [r.subject_digest for r in store.receipts()] == [store.trail_digest(OTHER)]


def test_reconcile_finds_matches_and_mismatches_on_a_keyed_trail(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    _old_store(path)
    with RecordStore(path) as store:
        store.record_served_many(
            [served(SUBJECT, request_id="agrees"), served(OTHER, request_id="differs")]
        )
        trail = store.served_entries()
        key_pseudonym = store.trail_key.pseudonym

    def entry(request_id: str, subject: str) -> dict[str, Any]:
        values = {"request_id": request_id, "item": ITEM, "purpose": PURPOSE}
        values.update(department=CONSUMER, subject=subject, outcome="ok")
        return {"index": 1, "leaf_hash": "h", "entry": {**values, "time": trail[-1].time}}

    entries = [entry("agrees", PSEUDONYM), entry("differs", "b2" * 32)]
    # r1 and r2, migrated from the old store, are in the trail and not in the hub's log
    differences = compare(
        entries=entries,
        served=trail,
        receipts=[],
        owned_items={ITEM},
        key_pseudonym=key_pseudonym,
    )
    assert sorted((d.kind, d.request_id, d.member) for d in differences) == [
        ("entry-differs", "differs", "subject"),
        ("served-not-logged", "r1", None),
        ("served-not-logged", "r2", None),
    ]


def test_the_trail_key_is_made_0600_and_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "var" / "adapter"
    with RecordStore(data_dir / "records.db") as store:
        key_id = store.trail_key.id
    key_file = data_dir / TRAIL_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(bytes.fromhex(key_file.read_text().strip())) == 32
    with RecordStore(data_dir / "records.db") as store:
        assert store.trail_key.id == key_id
    assert key_file.read_text().strip() not in repr(store.trail_key)


def test_a_lost_key_gets_a_new_one_and_a_warning_at_every_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Decision 0064: the adapter serves on, under a new key; the rows keyed under the
    lost one keep their digest and their key's id, are never compared under the new key,
    and every opening says how many there are."""
    path, key_file = tmp_path / "records.db", tmp_path / TRAIL_KEY_FILE
    with RecordStore(path) as store:
        store.record_served_many([served(SUBJECT, request_id="before"), served(None)])
        old_id = store.trail_key.id
    lost = key_file.read_text().strip()
    key_file.unlink()

    with caplog.at_level(logging.WARNING, logger="adapters.store"), RecordStore(path) as store:
        store.record_served_many([served(SUBJECT, request_id="after")])
        assert store.trail_key.id != old_id
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert [e.request_id for e in store.served_about(SUBJECT)] == ["after"]
        assert store.rows_under_other_keys() == 1
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "1 trail row(s)" in warning.getMessage()
    assert "was missing and a new one was made" in warning.getMessage()
    assert lost not in caplog.text
    assert key_file.read_text().strip() not in caplog.text
    assert rows(path, "SELECT subject_key FROM served WHERE request_id = 'before'") == [(old_id,)]

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="adapters.store"), RecordStore(path):
        pass
    assert "is not the one they were made under" in caplog.text


def test_a_key_file_that_holds_no_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / TRAIL_KEY_FILE).write_text("not a key\n")
    with pytest.raises(ConfigError, match="64 hex digits"):
        RecordStore(tmp_path / "records.db")
