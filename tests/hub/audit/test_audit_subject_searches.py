"""An auditor's searches of the log by subject are limited per person and hour
(decision 0086): at most ``audit_subject_searches_per_hour`` different subjects in any
hour, counted in the database that every hub process shares; beyond, ``429
subject-searches-throttled`` with ``Retry-After``, audited. Each subject counts once an
hour, whatever the page or the cursor (a cursor of 0 skipped the count: helper-144),
its export and searching it again are free, and searches without a subject are not
limited. Without it, one auditor's script could turn every identifier of a population
into its pseudonym and map the whole log back to people. Over HTTP, on SQLite and
PostgreSQL."""

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from onceonly.hub.audit.exceptions import SubjectSearchesThrottled
from onceonly.hub.audit.service import SubjectSearches
from onceonly.hub.db import make_engine
from onceonly.hub.kit.clock import ManualClock

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
    assert 3000 < wait <= 3600  # when the first subject counted is an hour old
    assert f"more than {PER_HOUR} subjects searched in an hour" in refused.json()["detail"]
    assert OTHERS[PER_HOUR] not in refused.text
    mine = [entry for entry in entries if entry.get("person") == "ilse"]
    assert [(e["outcome"], e["reason"]) for e in mine] == [
        ("refused", "subject-searches-throttled")
    ]
    # a cursor skips nothing, an export is a search, one without a subject is free
    assert _search(world, ilse, subject=OTHERS[PER_HOUR], cursor="0").status_code == 429
    assert _search(world, ilse, "export", subject=OTHERS[PER_HOUR]).status_code == 429
    assert _search(world, ilse, action="record.query").status_code == 200
    # the subjects counted this hour may be searched, and exported, again
    assert _search(world, ilse, subject=OTHERS[0]).status_code == 200
    assert _search(world, ilse, "export", subject=OTHERS[1]).status_code == 200
    # each person has a budget of their own
    ott = signed_in(world.hub, "ott", {"role": "auditor"})
    assert _search(world, ott, subject=OTHERS[0]).status_code == 200


def test_a_subject_counts_once_however_many_pages_and_searches_it_has(world: World) -> None:
    mari = signed_in(world.hub, "mari", {"role": "auditor"})
    first = _search(world, mari, subject=SUBJECT, action="record.query", limit="1")
    assert first.status_code == 200, first.text
    cursor = first.json()["next_cursor"]
    assert cursor is not None
    for subject in OTHERS[: PER_HOUR - 1]:  # the rest of the budget
        assert _search(world, mari, subject=subject).status_code == 200
    assert _search(world, mari, subject=OTHERS[PER_HOUR]).status_code == 429
    pages = 1
    while cursor is not None:  # the counted subject's pages are still read
        page = _search(
            world, mari, subject=SUBJECT, action="record.query", limit="1", cursor=str(cursor)
        )
        assert page.status_code == 200, page.text
        cursor, pages = page.json()["next_cursor"], pages + 1
    assert pages == 3
    again = _search(world, mari, subject=SUBJECT, action="record.query", limit="1")
    assert again.status_code == 200  # searched again from the start: counted already


def _console_search(browser: httpx.Client, **fields: str) -> httpx.Response:
    """The console's search as a browser sends it: the form, then its results page."""
    shown = browser.get("/audit").text
    answer = post_served_form(browser, shown, "/audit", {"csrf_token": csrf_token(shown), **fields})
    assert answer.status_code == 303, answer.text
    return browser.get(answer.headers["location"])


def test_the_console_search_by_subject_is_limited_too(world: World) -> None:
    """The console's search counts as the API's: each subject once an hour, whatever the
    page, and its refusal is a page that says when to search again (429, Retry-After),
    audited."""
    signed_in(world.hub, "kaja", {"role": "auditor"})  # made, with the test password
    with httpx.Client(base_url=world.hub.url) as browser:
        assert sign_in(browser, "kaja", TEST_PASSWORD).status_code == 303
        for subject in OTHERS[:PER_HOUR]:
            assert _console_search(browser, subject=subject).status_code == 200
        for _ in range(3):  # reloads, and going back from an entry: the same subject
            assert browser.get("/audit?results=1").status_code == 200
        with added_audit_entries(world.hub, action="audit.query") as entries:
            answer = _console_search(browser, subject=OTHERS[PER_HOUR])
        assert answer.status_code == 429, answer.text
        # a page trail of its own skips nothing (helper-144: pages=0 did)
        assert browser.get("/audit?results=1&pages=0").status_code == 429
        assert int(answer.headers["retry-after"]) > 0
        assert 'id="subject-searches-throttled"' in answer.text
        assert f"identifiers of {PER_HOUR} different people in an hour" in answer.text
        assert OTHERS[PER_HOUR] not in answer.text.replace(f'value="{OTHERS[PER_HOUR]}"', "")
        mine = [entry for entry in entries if entry.get("person") == "kaja"]
        assert [(e["outcome"], e["reason"]) for e in mine] == [
            ("refused", "subject-searches-throttled")
        ]
        token = csrf_token(browser.get("/audit").text)  # an export by subject is a search
        fields = {"csrf_token": token, "subject": OTHERS[PER_HOUR + 1], "format": "csv"}
        exported = browser.post("/audit/export", data=fields)
        assert exported.status_code == 429, exported.text
        assert 'id="subject-searches-throttled"' in exported.text
        fields["subject"] = OTHERS[0]  # counted this hour: exported
        assert browser.post("/audit/export", data=fields).status_code == 200
        assert _console_search(browser, action="record.query").status_code == 200


def test_the_budget_refills_one_subject_at_a_time_and_every_process_shares_it(
    database_url: str,
) -> None:
    """At most ``per_hour`` different subjects counted in any hour, each free again for
    the hour after it was counted; in the database, so that two hub processes (two
    engines, two ``SubjectSearches``, as ``--workers 2`` or two replicas) count one
    budget (per process, as before, each gave a person a budget of their own)."""
    clock = ManualClock(datetime(2030, 1, 2, tzinfo=UTC))

    async def run() -> None:
        one, two = make_engine(database_url), make_engine(database_url)
        first, second = SubjectSearches(per_hour=2), SubjectSearches(per_hour=2)
        try:
            await first.spend(one, "a", "s1", clock=clock)
            clock.advance(600)
            await second.spend(two, "a", "s2", clock=clock)  # the other process
            await second.spend(two, "a", "s1", clock=clock)  # counted already: free
            with pytest.raises(SubjectSearchesThrottled) as refused:
                await second.spend(two, "a", "s3", clock=clock)
            assert refused.value.headers["Retry-After"] == "3000"  # s1's hour ends
            with pytest.raises(SubjectSearchesThrottled):
                await first.spend(one, "a", "s3", clock=clock)
            await first.spend(one, "b", "s1", clock=clock)  # another person's budget
            clock.advance(2999)
            with pytest.raises(SubjectSearchesThrottled):
                await first.spend(one, "a", "s3", clock=clock)
            clock.advance(1)  # s1 counted an hour ago: one subject back
            await first.spend(one, "a", "s3", clock=clock)
            with pytest.raises(SubjectSearchesThrottled) as refused:
                await second.spend(two, "a", "s1", clock=clock)  # s1 counts again
            assert refused.value.headers["Retry-After"] == "600"  # s2's hour ends
            await second.spend(two, "a", "s2", clock=clock)  # counted 3000 s ago: free
        finally:
            await one.dispose()
            await two.dispose()

    asyncio.run(run())
