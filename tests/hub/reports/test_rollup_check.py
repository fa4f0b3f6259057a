"""The report's roll-ups checked against the audit log (``onceonly audit check-nodes``)
and rebuilt from it (``onceonly report rebuild``), on SQLite and PostgreSQL (decision
0080): a sum changed, added or deleted by hand is one line each, entries the roll-up has
not reached are not held against it, and a rebuild beside a running roll-up adds every
entry once."""

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from onceonly.hub.cli import main
from onceonly.hub.db import make_engine, make_sync_engine
from onceonly.hub.kit.clock import SYSTEM_CLOCK
from onceonly.hub.reports import check, repository
from onceonly.hub.reports.rollup import Rollup
from onceonly.hub.reports.tally import tally

from tests.hub.reports.test_rollup_write import _log_of, _stored

ITEM = "person.residential-address"


@pytest.fixture(autouse=True, params=[None, 3], ids=["one-pass", "in-shares"])
def record_budget(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Every check here runs as it runs by default (one pass over the entries), and again
    holding at most 3 records' sums a side (many passes, each over a share of the
    subjects): the same lines either way (the records' sorted within a share, and the
    tests here have at most one wrong record's line)."""
    if request.param is not None:
        monkeypatch.setattr(check, "RECORD_BUDGET", request.param)
    return int(request.param or check.RECORD_BUDGET)


def _run(
    args: list[str], url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[str], str]:
    """A command with the hub's settings from the environment: its status, its lines on
    standard output, and its standard error."""
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ONCEONLY_DATABASE_URL", url)
        patch.setenv("ONCEONLY_DATA_DIR", str(tmp_path))
        patch.delenv("ONCEONLY_CONFIG", raising=False)
        status = main(args)
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err


def _rolled_up(url: str, count: int, *, batch_size: int = 200) -> list[bytes]:
    """A log of ``count`` entries, all added to the roll-ups."""

    async def run() -> list[bytes]:
        engine = make_engine(url)
        try:
            logged = await _log_of(engine, count)
            rollup = Rollup(engine, interval=3600, clock=SYSTEM_CLOCK, batch_size=batch_size)
            assert (await rollup.catch_up()).behind == 0
            return logged
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _execute(url: str, *statements: str, rows: int | None = 1) -> None:
    """``statements`` in one transaction, each changing ``rows`` rows (None: DDL)."""
    engine = make_sync_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            changed = conn.execute(sa.text(statement)).rowcount
            assert rows is None or changed == rows, statement
    engine.dispose()


def _rollup_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if "roll-up" in line]


def test_sound_roll_ups_check_out(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], record_budget: int
) -> None:
    logged = _rolled_up(database_url, 60)
    sums = tally(logged)
    rows = len(sums.exchanges) + len(sums.owner_times) + len(sums.records)
    assert rows > 20  # something to compare
    _log_of_more(database_url, 9)  # entries the roll-up has not reached yet
    status, lines, err = _run(["audit", "check-nodes"], database_url, tmp_path, capsys)
    assert status == 0
    assert "WRONG" not in err
    assert "cannot" not in err
    said = (
        f"OK: {rows} report roll-up sums added up again from the log's first 60 entries,"
        " those the roll-ups hold (they add newer ones later)"
    )
    if record_budget >= len(sums.records):
        assert lines[-1] == said
    else:  # the passes it took are said
        assert lines[-1].startswith(said + ", in ")
        assert lines[-1].endswith(" passes over them")


def test_a_check_in_shares_reads_the_entries_once_a_share_and_finds_the_same(
    database_url: str,
) -> None:
    """With more distinct records than its budget, the check holds one share of them at a
    time (its memory was about 2.5 KB a record served, all at once); with the stored
    rows deleted it cannot know how many there are, and starts again in more shares
    when a share holds more than twice its budget."""
    logged = _rolled_up(database_url, 60)
    records = len(tally(logged).records)
    assert records > 12

    async def checked(budget: int) -> tuple[check.RollupCheck, list[str]]:
        engine = make_engine(database_url)
        lines: list[str] = []
        try:
            return await check.check_rollups(engine, report=lines.append, budget=budget), lines
        finally:
            await engine.dispose()

    whole, lines = asyncio.run(checked(10_000))
    assert (whole.passes, whole.wrong, lines) == (1, 0, [])
    shared, lines = asyncio.run(checked(3))
    assert shared.passes >= records // 3
    assert (shared.wrong, shared.sums, lines) == (0, whole.sums, [])

    _execute(database_url, "DELETE FROM report_records", rows=records)
    missing, lines = asyncio.run(checked(3))
    assert missing.passes > 1  # from one share, doubled while a share held over 6
    assert missing.wrong == records == len(lines)
    assert all("no row stored" in line for line in lines)


def _log_of_more(url: str, count: int) -> None:
    async def run() -> None:
        engine = make_engine(url)
        try:
            await _log_of(engine, count)
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_each_sum_changed_added_or_deleted_by_hand_is_one_line_and_a_rebuild_mends_them(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logged = _rolled_up(database_url, 60)
    _execute(
        database_url,
        "UPDATE report_exchanges SET queries = queries + 5 WHERE period = '2026-12'"
        f" AND item = '{ITEM}' AND outcome = 'ok'",
        "DELETE FROM report_records WHERE period = '2026' AND item = 'person.death'"
        f" AND subject = '{0:064x}'",
        "INSERT INTO report_owner_times (period, item, ms, calls)"
        f" VALUES ('2026-11', '{ITEM}', 4321, 2)",
    )
    status, lines, err = _run(["audit", "check-nodes"], database_url, tmp_path, capsys)
    assert status == 1
    expected = tally(logged)
    changed = next(
        key for key in expected.exchanges if key[:2] == ("2026-12", ITEM) and key[4] == "ok"
    )
    records = ("2026", "person.death", f"{0:064x}")
    assert _rollup_lines(lines) == [
        "report roll-up report_exchanges (period='2026-12' item='person.residential-address'"
        " consumer='tax' purpose='tax-assessment' outcome='ok' reason='' reached=True):"
        f" {expected.exchanges[changed] + 5} stored, the log's entries add up to"
        f" {expected.exchanges[changed]}",
        "report roll-up report_owner_times (period='2026-11' item='person.residential-address'"
        " ms=4321): 2 stored, the log's entries add up to 0",
        f"report roll-up report_records (period='2026' item='person.death' subject='{0:064x}'):"
        f" no row stored, the log's entries add up to {expected.records[records]}",
    ]
    assert "WRONG: 3 report roll-up sums" in err
    assert "onceonly report rebuild" in err

    status, lines, _ = _run(["report", "rebuild"], database_url, tmp_path, capsys)
    assert (status, lines) == (
        0,
        ["OK: the report's roll-ups added again from the log's 60 entries"],
    )
    status, lines, _ = _run(["audit", "check-nodes"], database_url, tmp_path, capsys)
    assert status == 0
    assert _rollup_lines(lines)[0].startswith("OK: ")


def test_a_rebuild_beside_a_running_roll_up_adds_every_entry_once(database_url: str) -> None:
    logged = _rolled_up(database_url, 300, batch_size=300)

    async def run() -> None:
        engine = make_engine(database_url)
        try:
            # more entries, which a replica's roll-up adds in small batches meanwhile
            logged.extend((await _log_of(engine, 300))[300:])
            replica = Rollup(engine, interval=3600, clock=SYSTEM_CLOCK, batch_size=7)
            ours = Rollup(engine, interval=3600, clock=SYSTEM_CLOCK, batch_size=11)

            async def rebuild_then_catch_up() -> None:
                await asyncio.sleep(0.01)  # the replica has begun
                await check.rebuild(engine)
                while (await ours.catch_up()).behind:
                    pass

            await asyncio.gather(replica.catch_up(), rebuild_then_catch_up())
            while (await replica.catch_up()).behind:
                pass
            async with engine.connect() as conn:
                assert await repository.cursor(conn) == 600
            assert await _stored(engine) == tally(logged)
            wrong: list[str] = []
            assert (await check.check_rollups(engine, report=wrong.append)).wrong == 0
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_roll_ups_beyond_the_log_are_wrong_not_a_crash(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cursor moved past the log by hand: the sums it claims are checked against the
    entries there are, and the rebuild adds those."""
    _rolled_up(database_url, 20)
    _execute(database_url, "UPDATE report_cursor SET next_index = 25")
    _execute(
        database_url,
        f"INSERT INTO report_owner_times (period, item, ms, calls) VALUES ('2027', '{ITEM}', 1, 1)",
    )
    status, lines, _ = _run(["audit", "check-nodes"], database_url, tmp_path, capsys)
    assert status == 1
    assert _rollup_lines(lines)[0] == (  # before: passed, and the report looked caught up
        "report roll-up report_cursor: it says the roll-ups hold the log's first 25 entries,"
        " but the log has 20"
    )
    assert len(_rollup_lines(lines)) == 2
    status, lines, _ = _run(["report", "rebuild"], database_url, tmp_path, capsys)
    assert (status, lines) == (
        0,
        ["OK: the report's roll-ups added again from the log's 20 entries"],
    )


def test_rows_a_tally_never_gives_are_wrong(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hostile review (helper-137): a row added with a total of 0 passed (it was
    compared as a missing row) while the report counted it as a record served and a
    consumer; a cursor set far past the log passed, and the check ran one query per
    5,000 entries it claimed."""
    _rolled_up(database_url, 20)
    _execute(
        database_url,
        "INSERT INTO report_records (period, item, subject, uses)"
        f" VALUES ('2026-12', '{ITEM}', 'forged', 0)",
        "UPDATE report_cursor SET next_index = 1000000000000000",
    )
    status, lines, _ = _run(["audit", "check-nodes"], database_url, tmp_path, capsys)
    assert status == 1
    assert _rollup_lines(lines) == [
        "report roll-up report_cursor: it says the roll-ups hold the log's first"
        " 1000000000000000 entries, but the log has 20",
        f"report roll-up report_records (period='2026-12' item='{ITEM}' subject='forged'):"
        " 0 stored, the log's entries add up to 0",
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_on_sqlite_a_total_or_a_flag_of_another_type_is_wrong_not_a_crash(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite keeps what it is given: a copy of a row with ``reached = 2`` (read as
    True by SQLAlchemy, so it replaced the real row and doubled the figures unseen) and
    a total of ``'many'`` (int() raised, and the command died with a traceback)."""
    _rolled_up(database_url, 20)
    _execute(
        database_url,
        "UPDATE report_cursor SET next_index = 'many'",  # helper-138: a traceback
        "INSERT INTO report_exchanges (period, item, consumer, purpose, outcome, reason,"
        " reached, queries) SELECT period, item, consumer, purpose, outcome, reason, 2,"
        " queries FROM report_exchanges WHERE reached = 1 AND outcome = 'ok'"
        " AND period = '2026-12' AND item = 'person.death'",
        "UPDATE report_records SET uses = 'many' WHERE (period, item, subject) IN"
        " (SELECT period, item, subject FROM report_records LIMIT 1)",
    )
    status, lines, _ = _run(["audit", "check-nodes"], database_url, tmp_path, capsys)
    assert status == 1
    found = _rollup_lines(lines)
    assert found[0] == (
        "report roll-up report_cursor: it holds no number of entries (invalid literal for"
        " int() with base 10: 'many')"
    )
    # the cursor read as 0, every stored sum is one the (no) entries do not give
    assert any("reached=2" in line and "the log's entries add up to 0" in line for line in found)
    assert any("'many' stored" in line for line in found)


def test_a_database_without_the_roll_ups_still_has_its_log_checked(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database from before the roll-ups (a restored old backup): the log's damage is
    still reported (exit 1), and the roll-ups are named as not checked; with a sound
    log the exit is 2, could not check (before: 2 with nothing said of the damage)."""
    _rolled_up(database_url, 20)
    rename = "ALTER TABLE {} RENAME TO {}"
    _execute(database_url, rename.format("report_cursor", "report_cursor_away"), rows=None)
    try:
        status, lines, err = _run(["audit", "check-nodes"], database_url, tmp_path, capsys)
        assert status == 2
        assert lines[0].startswith("OK: ")
        assert "cannot check: the report's roll-ups in " in err
        _execute(database_url, "DELETE FROM audit_nodes WHERE level = 1 AND idx = 0")
        status, lines, err = _run(["audit", "check-nodes"], database_url, tmp_path, capsys)
        assert status == 1
        assert lines == ["the subtree (1, 0) of entries 0-1: missing"]
        assert "cannot check: the report's roll-ups in " in err
        assert "DAMAGED: 1 problems" in err
    finally:  # back as migrated, for the next test's database
        _execute(database_url, rename.format("report_cursor_away", "report_cursor"), rows=None)
