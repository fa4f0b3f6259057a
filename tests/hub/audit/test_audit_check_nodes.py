"""`onceonly audit check-nodes`: an operator recomputes every stored subtree hash from
the entries, on SQLite and PostgreSQL, and gets one line per bad entry or node.
"""

import asyncio
import hashlib
import re
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from onceonly.hub.audit import leaves
from onceonly.hub.audit.service import AuditLog
from onceonly.hub.cli import main
from onceonly.hub.db import make_engine, make_sync_engine

SIZE = 300  # several pages of tree.CHECK_PAGE entries
NODES = SIZE - bin(SIZE).count("1")  # the perfect subtrees of level ≥ 1
FORGED = hashlib.sha256(b"forged").digest()
DIFFERS = "its stored hash is not the one its entries give"


def _append(url: str, count: int) -> None:
    async def run() -> None:
        engine = make_engine(url)
        log = AuditLog(engine, batch_size=64)
        await log.start()
        try:
            await asyncio.gather(
                *(
                    log.append(
                        leaves.build_entry(
                            time=datetime.now(UTC),
                            action="record.query",
                            outcome="ok",
                            request_id=f"r{n}",
                        )
                    )
                    for n in range(count)
                )
            )
        finally:
            await log.stop()
            await engine.dispose()

    asyncio.run(run())


def _execute(url: str, statement: str, **params: Any) -> None:
    engine = make_sync_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(statement), params)
    engine.dispose()


def _check_nodes(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[str], str]:
    """Run the command with the hub's settings from the environment: status, the lines
    it printed on standard output, and what it printed on standard error."""
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ONCEONLY_DATABASE_URL", url)
        patch.setenv("ONCEONLY_DATA_DIR", str(tmp_path))
        patch.delenv("ONCEONLY_CONFIG", raising=False)
        status = main(["audit", "check-nodes"])
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err


@pytest.fixture
def url(database_url: str) -> str:
    _append(database_url, SIZE)
    return database_url


def test_a_sound_log_checks_out(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, lines, err = _check_nodes(url, tmp_path, capsys)
    assert status == 0
    unchecked = (  # the test database has no amcheck (below, one that has it)
        "NOT CHECKED: the audit log's PostgreSQL indexes: the amcheck extension is not"
        " installed in this database (as a superuser: CREATE EXTENSION amcheck; then, unless"
        " the hub's role is a superuser, GRANT EXECUTE ON FUNCTION"
        " bt_index_check(regclass, boolean) TO it)\n"
    )
    assert err == (unchecked if url.startswith("postgresql") else "")
    assert lines == [
        f"OK: {NODES} stored subtree hashes recomputed from {SIZE} entries",
        "OK: 0 report roll-up sums added up again from the log's first 0 entries, those the"
        " roll-ups hold (they add newer ones later)",  # none added yet
    ]


def test_each_corrupted_or_lost_node_is_one_line(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    update = "UPDATE audit_nodes SET hash = :forged WHERE level = :level AND idx = :idx"
    _execute(url, update, forged=FORGED, level=1, idx=0)
    _execute(url, update, forged=FORGED, level=5, idx=7)
    _execute(url, "DELETE FROM audit_nodes WHERE level = 3 AND idx = 20")
    status, lines, err = _check_nodes(url, tmp_path, capsys)
    assert status == 1
    assert lines == [  # in log order
        f"the subtree (1, 0) of entries 0-1: {DIFFERS}",
        "the subtree (3, 20) of entries 160-167: missing",
        f"the subtree (5, 7) of entries 224-255: {DIFFERS}",
    ]
    assert "DAMAGED: 3 problems" in err


def test_an_entry_rewritten_with_its_leaf_hash_shows_in_every_node_above_it(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forged = b'{"forged":true}'
    _execute(
        url,
        "UPDATE audit_entries SET leaf = :leaf, leaf_hash = :hash WHERE idx = 7",
        leaf=forged,
        hash=leaves.leaf_hash(forged),
    )
    status, lines, _ = _check_nodes(url, tmp_path, capsys)
    assert status == 1
    above_7 = ["(1, 3) of entries 6-7", "(2, 1) of entries 4-7"] + [
        f"({level}, 0) of entries 0-{(1 << level) - 1}" for level in range(3, 9)
    ]
    assert lines == [f"the subtree {node}: {DIFFERS}" for node in above_7]


def test_an_entry_changed_under_its_leaf_hash_is_named(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _execute(url, "UPDATE audit_entries SET leaf = :leaf WHERE idx = 7", leaf=b'{"forged":1}')
    status, lines, _ = _check_nodes(url, tmp_path, capsys)
    assert status == 1
    assert lines == ["entry 7: its leaf_hash is not the hash of its leaf"]


def test_a_lost_entry_is_named_once_not_in_every_node_above_it(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _execute(url, "DELETE FROM audit_entries WHERE idx IN (5, 130)")
    status, lines, _ = _check_nodes(url, tmp_path, capsys)
    assert status == 1
    assert lines == ["entry 5: missing", "entry 130: missing"]


def test_a_database_without_the_log_cannot_be_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, lines, err = _check_nodes(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path, capsys)
    assert status == 2
    assert lines == []
    assert err.startswith("cannot check: the audit log in")
    unreachable = "postgresql://hub@127.0.0.1:9/onceonly"
    status, _, err = _check_nodes(unreachable, tmp_path, capsys)
    assert status == 2
    assert "127.0.0.1:9/onceonly" in err


def _sqlite_file(url: str) -> str:
    return url.removeprefix("sqlite:///")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_entry_left_out_of_an_index_by_hand_is_damage(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Decision 0078's follow-up (a hostile review): the subject index rebuilt as a
    partial index without entry 7, then given its definition back (``writable_schema``),
    hid that entry from the auditors' search by subject while every row and every node
    stayed as the hub wrote it. SQLite's integrity check finds it; check-nodes runs it."""
    database = _sqlite_file(url)
    with closing(sqlite3.connect(database, isolation_level=None)) as con:
        (sql,) = con.execute(
            "SELECT sql FROM sqlite_schema WHERE name = 'ix_audit_subject'"
        ).fetchone()
        for definition in (sql + " WHERE idx != 7", sql):
            con.execute("PRAGMA writable_schema = ON")
            con.execute(
                "UPDATE sqlite_schema SET sql = ? WHERE name = 'ix_audit_subject'", (definition,)
            )
            (version,) = con.execute("PRAGMA schema_version").fetchone()
            con.execute(f"PRAGMA schema_version = {version + 1}")
            con.execute("PRAGMA writable_schema = OFF")
            if definition != sql:
                with closing(sqlite3.connect(database, isolation_level=None)) as other:
                    other.execute("REINDEX ix_audit_subject")
    status, lines, err = _check_nodes(url, tmp_path, capsys)
    assert status == 1, lines
    assert any(
        line.startswith("the database file: ") and "ix_audit_subject" in line for line in lines
    )
    assert "DAMAGED" in err


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_index_value_stored_otherwise_is_damage(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _execute(url, "UPDATE audit_entries SET action = CAST(action AS BLOB) WHERE idx = 7")
    _execute(
        url, "UPDATE audit_entries SET time = strftime('%Y-%m-%dT%H:%M:%f', time) WHERE idx = 9"
    )
    status, lines, _ = _check_nodes(url, tmp_path, capsys)
    assert status == 1
    assert lines == [
        "entry 7: its index column(s) action not what its leaf says (the filters, the pages"
        " and the report read them)",  # bytes, not text
        "entry 7: its index column(s) action not stored as the hub writes them"
        " (the filters that compare them miss it)",
        "entry 9: its index column(s) time not stored as the hub writes them"
        " (the filters that compare them miss it)",
    ]


@contextmanager
def _amcheck(url: str, how: str = "") -> Iterator[None]:
    """The amcheck extension in the test's database (``how``: CREATE EXTENSION's
    options), for the test only."""
    _execute(url, f"CREATE EXTENSION IF NOT EXISTS amcheck {how}")
    try:
        yield
    finally:
        _execute(url, "DROP EXTENSION IF EXISTS amcheck")


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgres_amcheck_checks_the_logs_indexes_when_it_is_there(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As SQLite's integrity check (above): an index that lost a row hides that entry
    from the filters. Here an index stopped taking rows (``indisready``, as a superuser)
    while 10 more entries were appended."""
    with _amcheck(url):
        status, lines, _ = _check_nodes(url, tmp_path, capsys)
        assert status == 0
        checked = [line for line in lines if "PostgreSQL indexes" in line]
        assert len(checked) == 1
        assert re.fullmatch(
            r"OK: \d+ PostgreSQL indexes of the audit log checked by amcheck", checked[0]
        )

        ready = (
            "UPDATE pg_index SET indisready = {} WHERE indexrelid = 'ix_audit_subject'::regclass"
        )
        _execute(url, ready.format("false"))
        try:
            _append(url, 10)
        finally:
            _execute(url, ready.format("true"))
        try:
            status, lines, err = _check_nodes(url, tmp_path, capsys)
        finally:  # whole again, for the other tests of this process's database
            engine = make_sync_engine(url)
            with engine.begin() as conn:
                conn.execute(sa.text("REINDEX INDEX ix_audit_subject"))
            engine.dispose()
    assert status == 1
    damaged = [line for line in lines if line.startswith("the index ")]
    assert len(damaged) == 1, lines
    assert damaged[0].startswith("the index ix_audit_subject: heap tuple")
    assert "lacks matching index tuple" in damaged[0]
    assert "DAMAGED: 1 problems" in err


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgres_a_role_that_may_not_run_amcheck_is_told_so_not_failed(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The hub's role, in production not a superuser, owns its tables but may not run
    amcheck's functions until granted: the tree is still checked, the indexes are named
    as not checked, and the exit status is the tree's."""
    role = f"hub_{uuid.uuid4().hex[:8]}"
    _execute(url, f"CREATE ROLE {role} LOGIN")
    _execute(url, f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    try:
        with _amcheck(url):
            as_role = url.replace("postgresql://postgres@", f"postgresql://{role}@", 1)
            assert as_role != url, url
            status, _, err = _check_nodes(as_role, tmp_path, capsys)
    finally:
        _execute(url, f"DROP OWNED BY {role}")
        _execute(url, f"DROP ROLE {role}")
    assert status == 0
    assert err.startswith("NOT CHECKED: the audit log's PostgreSQL indexes: amcheck on ")
    assert "permission denied for function bt_index_check" in err


def test_an_index_column_changed_from_its_leaf_is_damage(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The index columns are copies of the leaf's members, which nothing but ``audit
    verify --full`` (an auditor's) compared: a department or an action changed by hand
    hid the entry from the filters, and from the report's roll-ups (helper-137, F3), while
    check-nodes said the log was sound."""
    _execute(url, "UPDATE audit_entries SET department = 'tax', action = 'x' WHERE idx = 7")
    _execute(url, f"UPDATE audit_entries SET subject = '{0:064x}' WHERE idx = 120")
    status, lines, err = _check_nodes(url, tmp_path, capsys)
    assert status == 1
    said = " not what its leaf says (the filters, the pages and the report read them)"
    assert lines == [
        f"entry 7: its index column(s) action, department{said}",
        f"entry 120: its index column(s) subject{said}",
    ]
    assert "DAMAGED: 2 problems" in err


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgres_amcheck_in_a_schema_of_any_name_is_found(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A schema name was pasted into the statement: ``chk :oid`` became a bind
    parameter, and every index "damaged" (helper-138)."""
    _execute(url, 'CREATE SCHEMA "chk \\:oid"')  # \\: for sa.text: the name is chk :oid
    try:
        with _amcheck(url, 'SCHEMA "chk \\:oid"'):
            status, lines, err = _check_nodes(url, tmp_path, capsys)
    finally:
        _execute(url, 'DROP SCHEMA "chk \\:oid" CASCADE')
    assert (status, err) == (0, "")
    assert any(
        line.endswith("PostgreSQL indexes of the audit log checked by amcheck") for line in lines
    )


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgres_an_amcheck_that_cannot_check_is_no_damage_but_cannot_check(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """amcheck 1.0 (left by an upgrade without ALTER EXTENSION ... UPDATE) has no
    bt_index_check(regclass, boolean): each index was counted as damaged (helper-138;
    so were a statement timeout, a cancel and a lost connection). It checked nothing, and
    the command says so."""
    with _amcheck(url, "VERSION '1.0'"):
        status, lines, err = _check_nodes(url, tmp_path, capsys)
    assert status == 2, lines  # could not check (helper-139: 0 told a monitor all was well)
    assert lines[-1].startswith("OK: ")  # the rest is said
    assert "roll-up" in lines[-1]
    assert "DAMAGED" not in err
    assert err.startswith("cannot check: the audit log's PostgreSQL indexes: amcheck on ")
    assert "does not exist" in err


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_stored_value_that_cannot_be_read_cannot_be_checked_not_a_traceback(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _execute(url, "UPDATE audit_entries SET time = '2026-13-45 25:61:61.000000' WHERE idx = 3")
    status, lines, err = _check_nodes(url, tmp_path, capsys)
    assert (status, lines) == (2, [])
    assert err.startswith("cannot check: the audit log in ")
    assert "a stored value: month must be in 1..12" in err


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgres_amchecks_function_is_called_by_its_whole_name(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Put on the search path, amcheck's schema renamed ``$user`` (which its owner may
    do) meant the role's own schema, where a function of the same name answered for it:
    every index "checked", nothing checked (helper-139)."""
    _execute(url, "CREATE SCHEMA amx")
    _execute(url, "CREATE SCHEMA IF NOT EXISTS postgres")  # the test's role's own
    _execute(url, "CREATE TABLE postgres.called (n int)")
    _execute(
        url,
        "CREATE FUNCTION postgres.bt_index_check(regclass, boolean) RETURNS void"
        " LANGUAGE sql AS 'INSERT INTO postgres.called VALUES (1)'",
    )
    try:
        with _amcheck(url, "SCHEMA amx"):
            _execute(url, 'ALTER SCHEMA amx RENAME TO "$user"')
            status, lines, _ = _check_nodes(url, tmp_path, capsys)
        engine = make_sync_engine(url)
        with engine.connect() as conn:
            called = conn.execute(sa.text("SELECT count(*) FROM postgres.called")).scalar()
        engine.dispose()
    finally:
        _execute(url, "DROP SCHEMA postgres CASCADE")
        _execute(url, 'DROP SCHEMA IF EXISTS "$user" CASCADE')
    assert called == 0  # before: once for each index
    assert status == 0
    assert any(line.endswith("checked by amcheck") for line in lines)
