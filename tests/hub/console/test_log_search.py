"""The auditors' search form (console.log_search) as tables: what it refuses, and the
API's filter it makes (the identifier turned into its pseudonym by the caller)."""

from datetime import UTC, datetime

import pytest

from onceonly.hub.console.log_search import (
    ACTIONS,
    REASONS,
    SEARCH_SECONDS,
    LogSearch,
    cursor_of,
    entry_rows,
    entry_time,
    open_search,
    seal_search,
    trail_of,
    trail_text,
)


@pytest.mark.parametrize(
    ("form", "fields"),
    [
        ({}, []),
        ({"subject": "x" * 257}, ["subject"]),
        # the API's subject rule (decision 0072); white space at the ends is trimmed
        ({"subject": " 38001085718 "}, []),
        ({"subject": "3800\u200b1085718"}, ["subject"]),
        ({"subject": "\u202e38001085718"}, ["subject"]),
        ({"subject": "\uff13\uff18\uff10\uff10\uff11"}, ["subject"]),  # full-width 38001
        ({"subject": "\u0663\u0668\u0660\u0660\u0661"}, ["subject"]),  # Arabic-Indic 38001
        ({"subject": "Mu\u0308ller"}, ["subject"]),  # not NFC
        ({"subject": "M\u00fcller"}, []),
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


def test_an_entry_that_commits_to_its_subject_shows_the_indexed_pseudonym_beside_it() -> None:
    """Decision 0069: the auditor's page shows the pseudonym the index keeps, labelled as
    coming from the index, next to the leaf's commitment."""
    entry = {"action": "record.query", "subject_commitment": "sha256:abc"}
    rows = entry_rows(entry, committed_subject="p" * 64)
    assert [(row.name, row.value) for row in rows] == [
        ("action", "record.query"),
        ("committed_subject", "p" * 64),
        ("subject_commitment", "sha256:abc"),
    ]
    assert "the entry holds its commitment" in rows[1].label
    assert [row.name for row in entry_rows(entry)] == ["action", "subject_commitment"]


@pytest.mark.parametrize(
    ("action", "outcome", "label"),
    [
        ("person.sign-in", "refused", "Account named in the attempt"),
        ("person.sign-in", "failed", "Account named in the attempt"),
        ("person.sign-in", "ok", "Person who acted"),
        ("person.put", "refused", "Person who acted"),
    ],
)
def test_a_sign_in_that_did_not_succeed_names_the_account_typed_not_who_acted(
    action: str, outcome: str, label: str
) -> None:
    """Anyone may type another's username (a review: a refused sign-in read "Person who
    acted: walter")."""
    entry = {"action": action, "outcome": outcome, "person": "walter"}
    rows = {row.name: row.label for row in entry_rows(entry)}
    assert rows["person"] == label


def test_a_moment_the_form_cannot_read_is_answered_with_both_forms_it_takes() -> None:
    """The hint offers a date or a time with its offset; so does the error."""
    errors = LogSearch.of({"since": "2026-11-05T14:00:00", "until": "soon"}).errors()
    expected = "Enter a date like 2026-11-05, or a time with its offset like 2026-11-05T14:00:00Z"
    assert [(error.field, error.message) for error in errors] == [
        ("since", expected),
        ("until", expected),
    ]


KEY = bytes(range(32))
SEARCH = LogSearch(subject="49001011234", action="record.query")


def test_a_kept_search_opens_only_for_its_sign_in_and_for_thirty_minutes() -> None:
    sealed = seal_search(SEARCH, key=KEY, session="s1", now=1000)
    assert "49001011234" not in sealed
    assert "record.query" not in sealed
    assert open_search(sealed, key=KEY, session="s1", now=1000 + SEARCH_SECONDS - 1) == SEARCH
    assert open_search(sealed, key=KEY, session="s1", now=1000 + SEARCH_SECONDS) is None
    assert open_search(sealed, key=KEY, session="s2", now=1000) is None  # another sign-in
    assert open_search(sealed, key=bytes(32), session="s1", now=1000) is None  # another key
    assert open_search(sealed[:-2] + "AA", key=KEY, session="s1", now=1000) is None
    assert open_search("not sealed", key=KEY, session="s1", now=1000) is None
    assert open_search(None, key=KEY, session="s1", now=1000) is None


@pytest.mark.parametrize(
    ("text", "trail"),
    [("", []), ("12", [12]), ("12.57", [12, 57]), ("12.x", []), ("1." * 101 + "1", [])],
)
def test_the_pages_trail_is_cursors_or_nothing(text: str, trail: list[int]) -> None:
    assert trail_of(text) == trail
    assert trail_of(trail_text(trail)) == trail


def _problem_types() -> set[str]:
    import onceonly.hub.app  # noqa: F401  (every domain's errors defined)
    from onceonly.hub.kit.problems import HubError

    found, waiting = set(), [HubError]
    while waiting:
        for kind in waiting.pop().__subclasses__():
            if kind.__module__.startswith("onceonly."):  # not a test's own error class
                found.add(kind.slug)
            waiting.append(kind)
    return found


def test_every_problem_type_has_words_as_a_reason() -> None:
    """A refusal's entry keeps its problem's slug as its reason: the auditor reads words."""
    assert _problem_types() - set(REASONS) == set()


@pytest.mark.parametrize(
    "action",
    ["registry.department.put", "registry.client.disable", "person.put", "citizen.sign-out"],
)
def test_the_actions_an_administrator_or_a_citizen_takes_have_words(action: str) -> None:
    assert action in ACTIONS


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("2026-12-07T07:07:04.267Z", "2026-12-07 07:07 UTC"),
        ("2026-12-07T09:07:04+02:00", "2026-12-07 07:07 UTC"),
        ("not a time", "not a time"),
    ],
)
def test_an_entrys_time_is_written_as_every_page_writes_times(text: str, shown: str) -> None:
    assert entry_time(text) == shown
