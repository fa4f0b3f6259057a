"""``--output json|csv|table`` (onceonly.hub.cli.output), as tables of answers and what
each form writes: no hub, no I/O but a string."""

import argparse
import csv
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from onceonly.hub.cli.output import Shape, form_of, human, role_cell, show

ITEMS = {
    "items": [
        {
            "id": "person.identity",
            "legal_basis": {"text": "Act §1", "reference": "SG 1"},
            "tags": ["person", "identity"],
            "created_at": "2026-03-01T08:15:02.123Z",
            "retired": False,
        },
        {"id": "tax.debt-status", "legal_basis": None, "tags": [], "created_at": None},
    ],
    "next_cursor": "abc",
}
SHAPE = Shape(rows="items", columns=("id", "legal_basis.text", "tags", "created_at"))


@pytest.fixture
def plus_two_thirty(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The local time zone is UTC+02:30 (a POSIX TZ rule: no zone database needed)."""
    monkeypatch.setenv("TZ", "XST-02:30")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def written(answer: Any, form: str, shape: Shape = SHAPE) -> str:
    out = io.StringIO()
    show(answer, form=form, shape=shape, out=out)
    return out.getvalue()


def test_json_is_the_answer_as_the_hub_gave_it() -> None:
    assert json.loads(written(ITEMS, "json")) == ITEMS


@pytest.mark.usefixtures("plus_two_thirty")
def test_a_table_shows_the_columns_with_local_times_and_offsets() -> None:
    lines = written(ITEMS, "table").splitlines()
    assert lines[0].split() == ["ID", "TEXT", "TAGS", "CREATED_AT"]
    time_at = "2026-03-01T10:45:02+02:30"  # 08:15:02.123Z
    assert lines[1].split() == ["person.identity", "Act", "§1", "person,", "identity", time_at]
    assert lines[2].split() == ["tax.debt-status", "-", "-", "-"]


def test_a_table_says_when_there_is_more(capsys: pytest.CaptureFixture[str]) -> None:
    shape = Shape(rows="items", columns=("id",), more=("next_cursor", "--cursor"))
    written(ITEMS, "table", shape)
    assert capsys.readouterr().err == "more: ask again with --cursor abc\n"


def test_an_empty_table_says_so_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert written({"items": []}, "table", Shape(rows="items")) == ""
    assert capsys.readouterr().err == "no items\n"


def test_csv_holds_every_member_with_objects_one_level_deep() -> None:
    rows = list(csv.DictReader(io.StringIO(written(ITEMS, "csv"))))
    assert list(rows[0]) == [
        "id",
        "legal_basis.text",
        "legal_basis.reference",
        "tags",
        "created_at",
        "retired",
        "legal_basis",
    ]
    assert rows[0]["legal_basis.text"] == "Act §1"
    assert rows[0]["tags"] == '["person","identity"]'
    assert rows[0]["created_at"] == "2026-03-01T08:15:02.123Z"  # as the hub wrote it
    assert rows[0]["retired"] == "false"
    assert rows[1]["legal_basis"] == ""


@pytest.mark.usefixtures("plus_two_thirty")
def test_one_object_is_a_column_of_members() -> None:
    person = {"username": "sara", "roles": [{"role": "steward", "department": "tax"}]}
    lines = written(person, "table", Shape(cells={"roles": role_cell})).splitlines()
    assert lines == ["username  sara", "roles     steward:tax"]
    assert written(person, "csv", Shape()).splitlines()[0] == "username,roles"


@pytest.mark.usefixtures("plus_two_thirty")
def test_seconds_since_the_epoch_are_shown_as_times() -> None:
    keys = {"keys": [{"kid": "k1", "active_from": 0, "retire_at": None}]}
    shape = Shape(rows="keys", epoch=frozenset({"active_from", "retire_at"}))
    assert written(keys, "table", shape).splitlines()[1].split() == [
        "k1",
        "1970-01-01T02:30:00+02:30",
        "-",
    ]
    assert "1970-01-01T00:00:00Z" in written(keys, "csv", shape)
    assert json.loads(written(keys, "json", shape)) == keys  # scripts keep their numbers


def test_a_list_of_plain_values_has_a_named_column() -> None:
    assert written(["a", "b"], "csv", Shape(scalar="item")).splitlines() == ["item", "a", "b"]


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (None, "-"),
        (True, "yes"),
        ("two\nlines", "two lines"),
        ("2026-13-45T99:99:99Z", "2026-13-45T99:99:99Z"),  # looks like a time, is not one
        ("2026-01-02", "2026-01-02"),  # a date stays a date
        ({"a": 1, "b": None}, "a=1"),
        ([1, 2], "1, 2"),
    ],
)
def test_human_cells(value: Any, cell: str) -> None:
    assert human(value) == cell


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("chosen", "stream", "form"),
    [
        (None, Terminal(), "table"),
        (None, io.StringIO(), "json"),
        ("csv", Terminal(), "csv"),
        ("table", io.StringIO(), "table"),
    ],
)
def test_the_default_form_follows_the_terminal(
    chosen: str | None, stream: io.StringIO, form: str
) -> None:
    assert form_of(argparse.Namespace(output=chosen), stream) == form


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"])
def test_csv_text_a_spreadsheet_would_run_starts_with_an_apostrophe(cell: str) -> None:
    text = written([{"name": cell, cell: "x"}], "csv", Shape())
    [row] = list(csv.DictReader(io.StringIO(text, newline="")))
    assert row == {"'" + cell: "x", "name": "'" + cell}


def test_csv_numbers_stay_numbers() -> None:
    [row] = list(csv.DictReader(io.StringIO(written([{"n": -1, "f": -0.5}], "csv", Shape()))))
    assert row == {"n": "-1", "f": "-0.5"}


def test_csv_a_line_break_in_a_cell_starts_no_row() -> None:
    """Unquoted, a CR would end the row in a spreadsheet, and ``=1+1`` would start one."""
    text = written([{"name": "a\r=1+1", "note": "b\n@SUM(A1)"}], "csv", Shape())
    [row] = list(csv.DictReader(io.StringIO(text, newline="")))
    assert row == {"name": "a\r=1+1", "note": "b\n@SUM(A1)"}


def test_csv_of_no_rows_is_the_header_of_their_columns_or_nothing() -> None:
    """An operator's review: an empty list printed a bare CRLF, no header at all."""
    listed, nothing = io.StringIO(), io.StringIO()
    show(
        {"clients": []},
        form="csv",
        shape=Shape(rows="clients", columns=("id", "department")),
        out=listed,
    )
    show([], form="csv", out=nothing)
    assert listed.getvalue() == "id,department\r\n"
    assert nothing.getvalue() == ""
