"""The auditors' search form (console.log_search) as tables: what it refuses, and the
API's filter it makes (the identifier turned into its pseudonym by the caller)."""

from datetime import UTC, datetime

import pytest

from onceonly.hub.console.log_search import LogSearch, cursor_of, entry_rows


@pytest.mark.parametrize(
    ("form", "fields"),
    [
        ({}, []),
        ({"subject": "x" * 257}, ["subject"]),
        ({"department": "Tax Office"}, ["department"]),
        ({"item": "person.identity"}, []),
        ({"action": "record.query"}, []),
        ({"outcome": "maybe"}, ["outcome"]),
        ({"since": "yesterday"}, ["since"]),
        ({"since": "2026-11-05T14:00:00"}, ["since"]),  # no offset: ambiguous
        ({"since": "2026-11-05", "until": "2026-11-04"}, ["until"]),
        ({"since": "2026-11-05", "until": "2026-11-05"}, []),  # that whole day
    ],
)
def test_the_form_refuses_what_the_api_would(form: dict[str, str], fields: list[str]) -> None:
    assert [error.field for error in LogSearch.of(form).errors()] == fields


def test_the_filter_has_the_pseudonym_and_a_date_until_the_end_of_that_day() -> None:
    search = LogSearch.of(
        {"subject": " 38001085718 ", "since": "2026-11-05", "until": "2026-11-05"}
    )
    where = search.entry_filter(pseudonym=lambda identifier: f"p({identifier})")
    assert where.subject == "p(38001085718)"
    assert where.since == datetime(2026, 11, 5, tzinfo=UTC)
    assert where.until == datetime(2026, 11, 6, tzinfo=UTC)
    assert where.department is None


def test_a_time_with_an_offset_is_read_in_utc() -> None:
    where = LogSearch.of({"since": "2026-11-05T14:00:00+02:00"}).entry_filter(pseudonym=str)
    assert where.since == datetime(2026, 11, 5, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "cursor"), [("", None), ("12", 12), ("-1", None), ("١٢", None), ("9" * 17, None)]
)
def test_a_cursor_is_a_plain_decimal(text: str, cursor: int | None) -> None:
    assert cursor_of(text) == cursor


def test_every_member_of_an_entry_is_shown() -> None:
    rows = entry_rows({"action": "record.query", "fields": ["street", "city"], "extra": {"b": 1}})
    assert [(row.name, row.value) for row in rows] == [
        ("action", "record.query"),
        ("fields", "street, city"),
        ("extra", "b: 1"),
    ]
