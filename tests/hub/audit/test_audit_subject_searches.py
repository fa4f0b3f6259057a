"""An auditor's searches of the log by subject are limited per person and hour
(decision 0086): ``audit_subject_searches_per_hour`` searches start at once, then one
every 3600 / that many seconds; beyond, ``429 subject-searches-throttled`` with
``Retry-After``, audited. Only a search's start counts (the first page, an export, the
console's search); its later pages, and searches without a subject, do not. Without
it, one auditor's script could turn every identifier of a population into its
pseudonym and map the whole log back to people. Over HTTP, on SQLite and PostgreSQL."""

from collections.abc import Iterator

import httpx
import pytest

from onceonly.hub.audit.exceptions import SubjectSearchesThrottled
from onceonly.hub.audit.service import SubjectSearches

from tests.hub.console.console_world import csrf_token, post_served_form, sign_in
from tests.hub.exchange_world import ADDRESS, PURPOSE, SUBJECT, World, module_exchange_world
from tests.hub_testing import (
    DATABASES,
    TEST_PASSWORD,
    added_audit_entries,
    problem_type,
    signed_in,
)

PER_HOUR = 3
OTHERS = [f"3800101{n:04d}" for n in range(10)]  # identifiers of nobody


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with module_exchange_world(
        request, tmp_path_factory, audit_subject_searches_per_hour=PER_HOUR
    ) as built:
        with built.client() as client:
            for _ in range(3):  # three reads of one person: pages of one entry
                client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
        yield built


def _search(
    world: World, auditor: dict[str, str], route: str = "entries", **params: str
) -> httpx.Response:
    return httpx.get(f"{world.hub.url}/v1/audit/{route}", params=params, headers=auditor)


def test_a_person_starts_so_many_searches_by_subject_an_hour_and_is_then_refused(
    world: World,
) -> None:
    ilse = signed_in(world.hub, "ilse", {"role": "auditor"})
    for subject in OTHERS[:PER_HOUR]:
        assert _search(world, ilse, subject=subject).status_code == 200
    with added_audit_entries(world.hub, action="audit.query") as entries:
        refused = _search(world, ilse, subject=OTHERS[PER_HOUR])
    assert refused.status_code == 429, refused.text
    assert problem_type(refused) == "subject-searches-throttled"
    assert refused.json()["title"] == "Too many searches by subject"
    wait = int(refused.headers["retry-after"])
    assert 0 < wait <= 3600 // PER_HOUR
    assert f"more than {PER_HOUR} searches by subject in an hour" in refused.json()["detail"]
    assert OTHERS[PER_HOUR] not in refused.text
    mine = [entry for entry in entries if entry.get("person") == "ilse"]
    assert [(e["outcome"], e["reason"]) for e in mine] == [
        ("refused", "subject-searches-throttled")
    ]
    # an export by subject is a search too; a search without one is not limited
    assert _search(world, ilse, "export", subject=OTHERS[0]).status_code == 429
    assert _search(world, ilse, action="record.query").status_code == 200
    # each person has a budget of their own
    ott = signed_in(world.hub, "ott", {"role": "auditor"})
    assert _search(world, ott, subject=OTHERS[0]).status_code == 200


def test_a_search_by_subject_counts_once_however_many_pages_it_has(world: World) -> None:
    mari = signed_in(world.hub, "mari", {"role": "auditor"})
    first = _search(world, mari, subject=SUBJECT, action="record.query", limit="1")
    assert first.status_code == 200, first.text
    cursor = first.json()["next_cursor"]
    assert cursor is not None
    for subject in OTHERS[: PER_HOUR - 1]:  # the rest of the budget
        assert _search(world, mari, subject=subject).status_code == 200
    assert _search(world, mari, subject=OTHERS[PER_HOUR]).status_code == 429
    pages = 1
    while cursor is not None:  # the first search's pages are still read
        page = _search(
            world, mari, subject=SUBJECT, action="record.query", limit="1", cursor=str(cursor)
        )
        assert page.status_code == 200, page.text
        cursor, pages = page.json()["next_cursor"], pages + 1
    assert pages == 3


def _console_search(browser: httpx.Client, **fields: str) -> httpx.Response:
    """The console's search as a browser sends it: the form, then its results page."""
    shown = browser.get("/audit").text
    answer = post_served_form(browser, shown, "/audit", {"csrf_token": csrf_token(shown), **fields})
    assert answer.status_code == 303, answer.text
    return browser.get(answer.headers["location"])


def test_the_console_search_by_subject_is_limited_too(world: World) -> None:
    """The console's search runs as the API's: its start counts, and its refusal is a
    page that says when to search again (429, Retry-After), audited."""
    signed_in(world.hub, "kaja", {"role": "auditor"})  # made, with the test password
    with httpx.Client(base_url=world.hub.url) as browser:
        assert sign_in(browser, "kaja", TEST_PASSWORD).status_code == 303
        for subject in OTHERS[:PER_HOUR]:
            assert _console_search(browser, subject=subject).status_code == 200
        with added_audit_entries(world.hub, action="audit.query") as entries:
            answer = _console_search(browser, subject=OTHERS[PER_HOUR])
        assert answer.status_code == 429, answer.text
        assert int(answer.headers["retry-after"]) > 0
        assert 'id="subject-searches-throttled"' in answer.text
        assert f"searched by a person's identifier {PER_HOUR} times" in answer.text
        assert OTHERS[PER_HOUR] not in answer.text.replace(f'value="{OTHERS[PER_HOUR]}"', "")
        mine = [entry for entry in entries if entry.get("person") == "kaja"]
        assert [(e["outcome"], e["reason"]) for e in mine] == [
            ("refused", "subject-searches-throttled")
        ]
        token = csrf_token(browser.get("/audit").text)  # an export by subject is a search
        fields = {"csrf_token": token, "subject": OTHERS[0], "format": "csv"}
        exported = browser.post("/audit/export", data=fields)
        assert exported.status_code == 429, exported.text
        assert 'id="subject-searches-throttled"' in exported.text
        assert _console_search(browser, action="record.query").status_code == 200


def test_the_budget_refills_one_search_at_a_time() -> None:
    searches = SubjectSearches(per_hour=2)
    searches.spend("a", now=0.0)
    searches.spend("a", now=0.0)
    with pytest.raises(SubjectSearchesThrottled) as refused:
        searches.spend("a", now=0.0)
    assert refused.value.headers["Retry-After"] == "1800"
    with pytest.raises(SubjectSearchesThrottled):
        searches.spend("a", now=1799.0)
    searches.spend("a", now=1800.0)  # one back after 3600 / 2 seconds
    with pytest.raises(SubjectSearchesThrottled):
        searches.spend("a", now=1800.0)
    searches.spend("b", now=0.0)  # another person's budget is whole
