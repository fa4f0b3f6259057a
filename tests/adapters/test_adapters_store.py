from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from onceonly.adapters import ImportFailed, RecordStore, ServedEntry, _store

from tests.adapters.adapter_testing import ITEM, RECORD, SCHEMA, SUBJECT


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordStore]:
    with RecordStore(tmp_path / "records.db") as store:
        yield store


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_put_then_get_returns_the_record(store: RecordStore) -> None:
    store.put(ITEM, SUBJECT, RECORD)

    assert store.get(ITEM, SUBJECT) == RECORD
    assert store.get(ITEM, "someone-else") is None
    assert store.count(ITEM) == 1


def test_replacing_a_record_bumps_its_revision(store: RecordStore) -> None:
    store.put(ITEM, SUBJECT, RECORD)
    store.put(ITEM, SUBJECT, {**RECORD, "city": "Tartu"})

    assert store.revision(ITEM, SUBJECT) == 2
    assert store.get(ITEM, SUBJECT) == {**RECORD, "city": "Tartu"}
    assert store.count(ITEM) == 1


def test_delete_reports_whether_a_record_existed(store: RecordStore) -> None:
    store.put(ITEM, SUBJECT, RECORD)

    assert store.delete(ITEM, SUBJECT) is True
    assert store.delete(ITEM, SUBJECT) is False
    assert store.count(ITEM) == 0


def test_csv_import_converts_cells_to_the_declared_types(
    store: RecordStore, tmp_path: Path
) -> None:
    csv_file = write(
        tmp_path / "in.csv",
        "subject,street,city,postal_code,floor,verified,moved_in\n"
        "1,Pikk 1,Tallinn,10123,3,yes,2020-01-31\n"
        "2,Rüütli 2,Tartu,,,false,\n",
    )

    report = store.import_csv(ITEM, csv_file, SCHEMA)

    assert report.imported == 2
    assert report.errors == []
    assert store.get(ITEM, "1") == {
        "street": "Pikk 1", "city": "Tallinn", "postal_code": "10123",
        "floor": 3, "verified": True, "moved_in": "2020-01-31",
    }  # fmt: skip
    assert store.get(ITEM, "2") == {"street": "Rüütli 2", "city": "Tartu", "verified": False}


def test_csv_import_builds_nested_objects_from_dotted_columns(
    store: RecordStore, tmp_path: Path
) -> None:
    csv_file = write(
        tmp_path / "in.csv", "subject,street,city,geo.lat,geo.lon\n1,Pikk 1,Tallinn,59.4,24\n"
    )

    store.import_csv(ITEM, csv_file, SCHEMA)

    record = store.get(ITEM, "1")
    assert record is not None
    assert record["geo"] == {"lat": 59.4, "lon": 24}


def test_csv_import_with_one_bad_row_imports_nothing_and_names_the_row(
    store: RecordStore, tmp_path: Path
) -> None:
    csv_file = write(
        tmp_path / "in.csv",
        "subject,street,city,floor,moved_in\n"
        "1,Pikk 1,Tallinn,3,2020-01-31\n"
        "2,Pikk 2,Tallinn,third,2020-01-31\n"
        "3,Pikk 3,Tallinn,1,31.01.2020\n",
    )

    with pytest.raises(ImportFailed) as caught:
        store.import_csv(ITEM, csv_file, SCHEMA)

    errors = caught.value.report.errors
    assert [(error.row, error.subject) for error in errors] == [(3, "2"), (4, "3")]
    assert errors[0].message == "column 'floor': expected integer"
    assert errors[1].message == "/moved_in: fails 'format' 'date'"
    assert "31.01.2020" not in errors[1].message
    assert store.count(ITEM) == 0


def test_csv_import_refuses_a_repeated_subject(store: RecordStore, tmp_path: Path) -> None:
    csv_file = write(tmp_path / "in.csv", "subject,street,city\n1,A,B\n1,C,D\n")

    with pytest.raises(ImportFailed) as caught:
        store.import_csv(ITEM, csv_file, SCHEMA)

    assert caught.value.report.errors[0].message == "subject repeats row 2"


def test_csv_import_refuses_a_header_without_subject(store: RecordStore, tmp_path: Path) -> None:
    csv_file = write(tmp_path / "in.csv", "id,street,city\n1,A,B\n")

    with pytest.raises(ImportFailed) as caught:
        store.import_csv(ITEM, csv_file, SCHEMA)

    assert caught.value.report.errors[0].row == 1


def test_jsonl_import_writes_every_line(store: RecordStore, tmp_path: Path) -> None:
    lines = [{"subject": str(n), "record": {**RECORD, "floor": n}} for n in range(3)]
    jsonl = write(tmp_path / "in.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n")

    report = store.import_jsonl(ITEM, jsonl, SCHEMA)

    assert report.imported == 3
    assert store.get(ITEM, "2") == {**RECORD, "floor": 2}


def test_jsonl_import_refuses_a_line_that_is_not_json(store: RecordStore, tmp_path: Path) -> None:
    good = json.dumps({"subject": "1", "record": RECORD})
    jsonl = write(tmp_path / "in.jsonl", f"{good}\n{{oops\n")

    with pytest.raises(ImportFailed) as caught:
        store.import_jsonl(ITEM, jsonl, SCHEMA)

    assert caught.value.report.errors[0].row == 2
    assert store.count(ITEM) == 0


def test_served_log_keeps_entries_in_order(store: RecordStore) -> None:
    for outcome in ("ok", "refused"):
        store.record_served(
            request_id="r1", item=ITEM, consumer="tax", purpose="p",
            subject_sha256="abc", outcome=outcome,
        )  # fmt: skip

    assert [entry.outcome for entry in store.served_entries()] == ["ok", "refused"]


def test_a_store_written_before_commitments_keeps_its_trail_and_gains_the_columns(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE served (id INTEGER PRIMARY KEY AUTOINCREMENT, request_id VARCHAR(64),"
            " time VARCHAR(32) NOT NULL, item VARCHAR(128) NOT NULL, consumer VARCHAR(128),"
            " purpose VARCHAR(64), subject_sha256 VARCHAR(64), outcome VARCHAR(16) NOT NULL,"
            " reason VARCHAR(64))"
        )
        old.execute(
            "INSERT INTO served (request_id, time, item, outcome) VALUES ('r1', 't', 'i', 'ok')"
        )
    with RecordStore(path) as store:
        store.record_served(
            request_id="r2",
            item=ITEM,
            consumer="tax",
            purpose="p",
            subject_sha256=None,
            outcome="ok",
            commitment="hmac-sha256:x",
            commitment_key="k",
        )
        trail = store.served_entries()
    assert [(e.request_id, e.commitment) for e in trail] == [("r1", None), ("r2", "hmac-sha256:x")]
    assert [e.subject_pseudonym for e in trail] == [None, None]  # the column was added too


def test_each_change_carries_its_own_idempotency_key(store: RecordStore) -> None:
    store.put(ITEM, SUBJECT, RECORD)
    store.put(ITEM, SUBJECT, RECORD)
    store.delete(ITEM, SUBJECT)
    keys = [change.idempotency_key for change in store.pending_changes()]
    assert len(set(keys)) == 3
    assert all(len(key) == 32 for key in keys)
    assert [c.idempotency_key for c in store.pending_changes()] == keys  # kept, not remade


def test_changes_noted_before_keys_get_one_each_once(tmp_path: Path) -> None:
    """An outbox from before idempotency keys: each waiting change gets its own key when
    the store opens, and keeps it across openings (so that its publishes are one event)."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE changes (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " item VARCHAR(128) NOT NULL, subject VARCHAR(256) NOT NULL,"
            " kind VARCHAR(16) NOT NULL, time VARCHAR(32) NOT NULL)"
        )
        for subject in ("a", "b"):
            old.execute(
                "INSERT INTO changes (item, subject, kind, time) VALUES (?, ?, 'changed', 't')",
                (ITEM, subject),
            )
    with RecordStore(path) as store:
        keys = [change.idempotency_key for change in store.pending_changes()]
    with RecordStore(path) as store:
        assert [change.idempotency_key for change in store.pending_changes()] == keys
    assert len(set(keys)) == 2
    assert all(len(key) == 32 for key in keys)


def served(request_id: str) -> ServedEntry:
    return ServedEntry(
        request_id=request_id, time="2026-12-06T13:00:00.000Z", item=ITEM, consumer="tax",
        purpose="p", subject_sha256="abc", outcome="ok", reason=None,
    )  # fmt: skip


def test_a_spent_jti_is_refused_by_another_store_on_the_same_file(tmp_path: Path) -> None:
    """Single use holds for every process on one data_dir: the jti is the key of the
    spent-token table, written in the entry's own commit; a spent jti writes no entry."""
    later = time.time() + 70
    with RecordStore(tmp_path / "records.db") as one, RecordStore(tmp_path / "records.db") as two:
        assert one.spend_and_record([("j1", later, served("r1")), ("j2", later, served("r2"))]) == [
            True,
            True,
        ]
        assert two.spend_and_record([("j2", later, served("r3")), ("j3", later, served("r4"))]) == [
            False,
            True,
        ]
        assert [entry.request_id for entry in two.served_entries()] == ["r1", "r2", "r4"]
        assert sorted(jti for jti, _ in two.spent_tokens()) == ["j1", "j2", "j3"]


def test_a_token_whose_time_passed_before_its_commit_is_refused(store: RecordStore) -> None:
    """A token checked before a slow source read or lock wait, past its forget_after by
    the commit: its spent row may have been purged meanwhile by any process, so it is
    refused rather than answered a second time."""
    now = time.time()
    late, kept = ("late", now - 1, served("r1")), ("kept", now + 60, served("r2"))
    assert store.spend_and_record([late, kept]) == [False, True]
    assert [entry.request_id for entry in store.served_entries()] == ["r2"]
    assert [jti for jti, _ in store.spent_tokens(now=0)] == ["kept"]


def test_spent_jtis_are_purged_a_margin_past_their_time_at_most_every_so_often(
    store: RecordStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = time.time()
    clock = [start]
    monkeypatch.setattr(_store.time, "time", lambda: clock[0])
    store.spend_and_record([("a", start + 10, served("r1")), ("b", start + 500, served("r2"))])

    monkeypatch.setattr(_store, "PURGE_EVERY", 0.0)
    clock[0] = start + 10 + _store.PURGE_MARGIN - 1  # a's time passed, not its margin
    store.spend_and_record([("c", clock[0] + 60, served("r3"))])
    assert sorted(jti for jti, _ in store.spent_tokens(now=0)) == ["a", "b", "c"]

    clock[0] = start + 10 + _store.PURGE_MARGIN + 1
    store.spend_and_record([("d", clock[0] + 60, served("r4"))])
    assert sorted(jti for jti, _ in store.spent_tokens(now=0)) == ["b", "c", "d"]

    monkeypatch.setattr(_store, "PURGE_EVERY", 3600.0)
    clock[0] = start + 500 + _store.PURGE_MARGIN + 1  # b's margin passed, but no purge due
    store.spend_and_record([("e", clock[0] + 60, served("r5"))])
    assert "b" in {jti for jti, _ in store.spent_tokens(now=0)}
    assert len(store.served_entries()) == 5  # the trail itself is never purged


def test_a_failed_batch_spends_no_jti(store: RecordStore) -> None:
    later = time.time() + 70
    broken = served("r2")
    object.__setattr__(broken, "outcome", None)  # NOT NULL: the insert fails

    with pytest.raises(sqlite3.IntegrityError):
        store.spend_and_record([("j1", later, served("r1")), ("j2", later, broken)])

    assert store.spent_tokens() == []
    assert store.served_entries() == []
