"""The auditors' pages over HTTP (as a browser without JavaScript): the log searched by a
person's identifier (sent in the form, never in an address), an entry's page with its
inclusion proof checked, checkpoint history, exports, the efficiency dashboard, roles,
and every read audited as the API audits it. On SQLite and PostgreSQL, with a real
exchange (the civil registry's adapter, the social-welfare department as consumer)."""

import csv
import html
import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest

from onceonly.hub.audit import repository as audit_repository
from onceonly.hub.audit.models import AuditCheckpoint
from onceonly.hub.console import auditor
from onceonly.hub.db import make_engine, session_factory

from tests.hub.console.console_world import csrf_token, post_served_form, sign_in
from tests.hub.exchange_world import (
    ADDRESS,
    CONSUMER,
    PURPOSE,
    SUBJECT,
    World,
    module_exchange_world,
)
from tests.hub_testing import DATABASES, TEST_PASSWORD, added_audit_entries, wait_until

AUDITOR, ADMINISTRATOR, STEWARD = "ines", "arvo", "stella"
PEOPLE = {
    AUDITOR: {"role": "auditor"},
    ADMINISTRATOR: {"role": "administrator"},
    STEWARD: {"role": "steward", "department": "civil-registry"},
}
VERIFIED = re.compile(r"Included in the log signed at [0-9: -]+ UTC \(tree size (\d+)\)")


@dataclass
class AuditWorld:
    world: World
    index: int  # the entry of the exchange about SUBJECT

    @property
    def url(self) -> str:
        return self.world.hub.url

    @contextmanager
    def signed_in(self, username: str) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=self.url) as client:
            answer = sign_in(client, username, TEST_PASSWORD)
            assert answer.status_code == 303, answer.text
            yield client


@pytest.fixture(scope="module", params=DATABASES)
def audit_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AuditWorld]:
    with module_exchange_world(request, tmp_path_factory, checkpoint_interval=0.05) as world:
        with world.hub.admin() as admin:
            for username, role in PEOPLE.items():
                body = {"password": TEST_PASSWORD, "roles": [role]}
                admin.call("PUT", f"/v1/admin/people/{username}", body)
        with world.client() as client:
            result = client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
        yield AuditWorld(world=world, index=result.receipt.index)


def _search(client: httpx.Client, **fields: str) -> httpx.Response:
    """The search as a browser sends it: the form as served (post_served_form), then the
    results page the POST redirects to (or the POST's own answer when it refuses)."""
    shown = client.get("/audit").text
    form = {"csrf_token": csrf_token(shown), **fields}
    answer = post_served_form(client, shown, "/audit", form)
    if answer.status_code != 303:
        return answer
    assert answer.headers["location"] == auditor.RESULTS
    return client.get(answer.headers["location"])


def _entry_links(html: str) -> list[int]:
    return [
        int(found) for found in re.findall(r'href="/audit/entries/(\d+)(?:\?pages=[\d.]+)?"', html)
    ]


def test_an_auditor_finds_an_access_by_the_persons_identifier_which_goes_in_no_address(
    audit_world: AuditWorld,
) -> None:
    with (
        audit_world.signed_in(AUDITOR) as browser,
        added_audit_entries(audit_world.world.hub, action="audit.query") as queries,
    ):
        answer = _search(browser, subject=SUBJECT, action="record.query")
        assert answer.status_code == 200, answer.text
        assert SUBJECT not in str(answer.url)
        assert answer.headers["cache-control"] == "no-store"
        assert _entry_links(answer.text) == [audit_world.index]
        assert "A department fetched a record" in answer.text
        nobody = _search(browser, subject="49002020000", action="record.query")
        assert _entry_links(nobody.text) == []
    pseudonym = audit_world.world.hub.keys.pseudonym
    mine = [q for q in queries if q["person"] == AUDITOR]  # not the test's own reads
    assert [(q["subject"], q["query"]) for q in mine] == [
        (pseudonym(SUBJECT), {"action": "record.query", "limit": auditor.PAGE_SIZE}),
        (pseudonym("49002020000"), {"action": "record.query", "limit": auditor.PAGE_SIZE}),
    ]
    assert all(SUBJECT not in json.dumps(q) for q in queries)


def test_the_entry_page_shows_the_entry_in_words_and_its_proof_checked(
    audit_world: AuditWorld,
) -> None:
    path = f"/audit/entries/{audit_world.index}"
    with (
        audit_world.signed_in(AUDITOR) as browser,
        added_audit_entries(audit_world.world.hub, action="audit.read") as reads,
    ):
        wait_until(lambda: VERIFIED.search(browser.get(path).text), what="a signed checkpoint")
        page = browser.get(path).text
    found = VERIFIED.search(page)
    assert found is not None
    assert int(found.group(1)) > audit_world.index
    assert "✓" in page
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC \(<span", page)  # the time, then as logged
    assert CONSUMER in page
    assert PURPOSE in page
    assert audit_world.world.hub.keys.pseudonym(SUBJECT) in page
    assert SUBJECT not in page
    assert 'id="proof"' in page
    assert reads
    assert {(r["person"], r["outcome"], r["query"]["index"]) for r in reads} == {
        (AUDITOR, "ok", audit_world.index)
    }


def test_the_entry_page_shows_the_pseudonym_the_index_files_the_entry_under(
    audit_world: AuditWorld,
) -> None:
    """The API's ``indexed_subject`` (decision 0069's follow-up), in its own row."""
    with audit_world.signed_in(AUDITOR) as browser:
        page = browser.get(f"/audit/entries/{audit_world.index}").text
    pseudonym = audit_world.world.hub.keys.pseudonym(SUBJECT)
    row = re.search(
        r"<dt [^>]*>Pseudonym the log's index files the entry under</dt>\s*"
        r'<dd [^>]*>\s*<span class="app-code">([^<]*)</span>',
        page,
    )
    assert row is not None, page
    assert row.group(1) == pseudonym
    with audit_world.signed_in(AUDITOR) as browser:
        browser.cookies.set("onceonly-language", "zh-Hans")
        chinese = browser.get(f"/audit/entries/{audit_world.index}").text
    assert "日志索引归档该条目所用的假名" in chinese


def test_an_entry_that_does_not_exist_is_not_found_and_the_read_is_audited(
    audit_world: AuditWorld,
) -> None:
    with (
        audit_world.signed_in(AUDITOR) as browser,
        added_audit_entries(audit_world.world.hub, action="audit.read") as reads,
    ):
        assert browser.get("/audit/entries/9999999").status_code == 404
        assert browser.get("/audit/entries/x1").status_code == 404
    assert [(r["outcome"], r["reason"]) for r in reads] == [("refused", "entry-not-found")] * 2


def test_results_have_next_and_previous_pages_as_links_without_the_filters(
    audit_world: AuditWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auditor, "PAGE_SIZE", 2)
    with audit_world.signed_in(AUDITOR) as browser:
        first = _search(browser, action="person.sign-in")
        assert len(_entry_links(first.text)) == 2
        assert "Previous page" not in first.text
        following = re.search(r'href="(/audit\?results=1&amp;pages=\d+)" rel="next"', first.text)
        assert following is not None
        second = browser.get(html.unescape(following[1]))
        assert _entry_links(second.text)
        assert min(_entry_links(second.text)) > max(_entry_links(first.text))
        assert 'href="/audit?results=1" rel="prev"' in second.text
        again = browser.get("/audit?results=1")  # the previous page: the first again
        assert _entry_links(again.text) == _entry_links(first.text)
        assert 'value="person.sign-in"' in again.text  # the form, filled in
        assert "person.sign-in" not in following[1]  # the filters go in no address


def test_the_results_page_is_titled_as_results_and_the_form_as_a_search(
    audit_world: AuditWorld,
) -> None:
    """A review: the results had the empty form's <title> and <h1>."""
    with audit_world.signed_in(AUDITOR) as browser:
        form = browser.get("/audit").text
        results = _search(browser, subject=SUBJECT, action="record.query").text
    title = "<title>{} \u2013 Onceonly console</title>"
    assert title.format("Search the audit log") in form
    assert '<h1 class="govuk-heading-l">Search the audit log</h1>' in form
    results_title = "Results: 1 entry on this page \u2013 Search the audit log"
    assert title.format(results_title) in results
    assert '<h1 class="govuk-heading-l">Results: 1 entry on this page</h1>' in results


def test_the_entry_page_goes_back_to_its_results_and_each_showing_is_audited(
    audit_world: AuditWorld,
) -> None:
    hub = audit_world.world.hub
    with (
        audit_world.signed_in(AUDITOR) as browser,
        added_audit_entries(hub, action="audit.query") as queries,
    ):
        results = _search(browser, subject=SUBJECT, action="record.query")
        sealed = browser.cookies["onceonly-audit-search"]
        assert SUBJECT not in sealed
        (index,) = _entry_links(results.text)
        entry = browser.get(f"/audit/entries/{index}")
        back = re.search(
            r'<a href="([^"]+)" class="govuk-back-link" id="back-to-results">', entry.text
        )
        assert back is not None
        assert back[1] == "/audit?results=1"
        shown_again = browser.get(back[1])  # a GET: no form to send again
        assert _entry_links(shown_again.text) == [index]
        assert "is itself an entry of the log" in shown_again.text
        with audit_world.signed_in(AUDITOR) as other:  # another sign-in, the same cookie
            other.cookies.set("onceonly-audit-search", sealed)
            refused = other.get("/audit?results=1")
            assert 'id="search-ended"' in refused.text
            assert _entry_links(refused.text) == []
            assert 'id="back-to-results"' not in other.get(f"/audit/entries/{index}").text
    mine = [q for q in queries if q["person"] == AUDITOR]
    assert len(mine) == 2  # the search shown, and shown again
    pseudonym = hub.keys.pseudonym(SUBJECT)
    assert all(q["subject"] == pseudonym for q in mine)


def test_results_write_times_as_other_pages_and_reasons_in_words_beside_their_slug(
    audit_world: AuditWorld,
) -> None:
    with audit_world.signed_in(STEWARD) as steward:
        assert steward.get("/audit").status_code == 403  # a refusal: route.refused, forbidden
    with audit_world.signed_in(AUDITOR) as browser:
        refused = _search(browser, action="route.refused", outcome="refused").text
        signed_in = _search(browser, action="person.sign-in", outcome="ok").text
    assert "Refused: not allowed for this role" in refused
    assert '<span class="app-code">forbidden</span>' in refused
    assert "Done: with a password" in signed_in
    assert '<span class="app-code">password</span>' in signed_in
    for page in (refused, signed_in):
        results = page[page.index('id="results"') :]
        assert re.search(r">\d{4}-\d\d-\d\d \d\d:\d\d UTC<", results)
        assert not re.search(r"\d\d:\d\d:\d\d", results)  # no ISO time with seconds


def test_the_department_item_and_action_fields_suggest_known_values_and_take_any(
    audit_world: AuditWorld,
) -> None:
    with audit_world.signed_in(AUDITOR) as browser:
        form = browser.get("/audit").text
        for name, value, words in (
            ("department", CONSUMER, None),
            ("item", ADDRESS, None),
            ("action", "registry.department.put", "A department was added or changed"),
        ):
            assert f'id="{name}" name="{name}" type="text"' in form
            assert f'list="{name}-values"' in form
            values = re.search(rf'<datalist id="{name}-values">(.*?)</datalist>', form, re.S)
            assert values is not None
            assert f'<option value="{value}">' in values[1]
            assert words is None or f'<option value="{value}">{words}</option>' in values[1]
        typed = _search(browser, department="no-such-department", action="no.such-action")
    assert typed.status_code == 200  # not one of the list, and still a search
    assert "No entry matches" in typed.text
    assert 'value="no-such-department"' in typed.text


def test_signing_out_removes_the_kept_search(audit_world: AuditWorld) -> None:
    with audit_world.signed_in(AUDITOR) as browser:
        _search(browser, subject=SUBJECT)
        token = csrf_token(browser.get("/account").text)
        answer = browser.post("/sign-out", data={"csrf_token": token})
        removed = [c for c in answer.headers.get_list("set-cookie") if "audit-search" in c]
        assert removed
        assert "Max-Age=0" in removed[0]


def test_a_search_form_with_errors_is_answered_with_an_error_summary(
    audit_world: AuditWorld,
) -> None:
    with audit_world.signed_in(AUDITOR) as browser:
        answer = _search(browser, since="yesterday", until="2026-01-01", outcome="maybe")
    assert answer.status_code == 400
    assert 'class="govuk-error-summary"' in answer.text
    assert 'href="#since"' in answer.text
    assert 'href="#outcome"' in answer.text


@pytest.mark.parametrize(
    "subject",
    [
        SUBJECT[:4] + "\u200b" + SUBJECT[4:],
        SUBJECT.translate({ord("0") + n: 0xFF10 + n for n in range(10)}),
    ],
    ids=["zero-width space", "full-width digits"],
)
def test_an_identifier_the_api_refuses_is_a_field_error_and_audited(
    audit_world: AuditWorld, subject: str
) -> None:
    """Decision 0072: before, the search ran under another pseudonym and found nothing."""
    with (
        audit_world.signed_in(AUDITOR) as browser,
        added_audit_entries(audit_world.world.hub, action="audit.query") as queries,
    ):
        answer = _search(browser, subject=subject, action="record.query")
    assert answer.status_code == 400
    assert 'href="#subject"' in answer.text
    assert "Enter the identifier as it was issued" in answer.text
    assert _entry_links(answer.text) == []
    mine = [q for q in queries if q["person"] == AUDITOR]
    assert [(q["outcome"], q["reason"]) for q in mine] == [("refused", "invalid-request")]


def test_a_search_without_its_csrf_token_is_refused(audit_world: AuditWorld) -> None:
    with audit_world.signed_in(AUDITOR) as browser:
        assert browser.post("/audit", data={"subject": SUBJECT}).status_code == 403
        assert browser.post("/audit", data={"csrf_token": "forged"}).status_code == 403


@pytest.mark.parametrize("format", ["csv", "jsonl"])
def test_an_export_has_the_searchs_filters_and_is_audited_as_the_apis(
    audit_world: AuditWorld, format: str
) -> None:
    with (
        audit_world.signed_in(AUDITOR) as browser,
        added_audit_entries(audit_world.world.hub, action="audit.export") as exports,
    ):
        token = csrf_token(browser.get("/audit").text)
        fields = {"csrf_token": token, "subject": SUBJECT, "item": ADDRESS, "format": format}
        answer = browser.post("/audit/export", data=fields)
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="audit-entries.{format}"'
    )
    if format == "csv":
        rows = list(csv.DictReader(io.StringIO(answer.text)))
        indexes = {int(row["index"]) for row in rows}
    else:
        indexes = {json.loads(line)["index"] for line in answer.text.splitlines()}
    assert audit_world.index in indexes
    assert SUBJECT not in answer.text
    (entry,) = exports
    assert entry["query"] == {"item": ADDRESS, "format": format}
    assert entry["subject"] == audit_world.world.hub.keys.pseudonym(SUBJECT)
    assert entry["person"] == AUDITOR


def test_the_checkpoint_history_shows_each_checkpoint_verified_newest_first(
    audit_world: AuditWorld,
) -> None:
    with audit_world.signed_in(AUDITOR) as browser:
        latest = httpx.get(f"{audit_world.url}/v1/audit/checkpoint").text.split("\n")[1]
        page = browser.get("/checkpoints").text
        assert "Verified" in page
        assert "Does not verify" not in page
        verifier = httpx.get(f"{audit_world.url}/v1/audit/verifier-key").text.strip()
        assert verifier in page
        sizes = [int(size) for size in TREE_SIZES.findall(page)]
        assert sizes == sorted(sizes, reverse=True)
        assert sizes[0] >= int(latest)  # the newest first (another may have come since)
        assert browser.get("/checkpoints?up_to=999999").status_code == 200
        assert "No checkpoint up to this size." in browser.get("/checkpoints?up_to=0").text


TREE_SIZES = re.compile(r'govuk-table__cell--numeric">(\d+)<')


def _checkpoint(size: int) -> AuditCheckpoint:
    return AuditCheckpoint(tree_size=size, root=b"r", note="n", time=datetime.now(UTC))


@pytest.mark.anyio
async def test_checkpoint_pages_go_newest_first_with_newer_and_older_neighbours(
    database_url: str,
) -> None:
    page_size = auditor.CHECKPOINTS_PAGE
    sizes = list(range(3, 3 * (2 * page_size + 11), 3))  # two pages and a bit
    engine = make_engine(database_url)
    try:
        async with engine.begin() as conn:
            for size in sizes:
                await audit_repository.insert_checkpoint(conn, _checkpoint(size))
        async with session_factory(engine)() as session:
            newest = await auditor.checkpoint_page(session, up_to=sizes[-1])
            assert [row.tree_size for row in newest.rows] == sizes[::-1][:page_size]
            assert newest.newer is None
            assert newest.older is not None
            older = await auditor.checkpoint_page(session, up_to=newest.older)
            assert [row.tree_size for row in older.rows] == sizes[::-1][page_size : 2 * page_size]
            assert older.newer == sizes[-1]  # its newer page is the newest one again
            assert older.older is not None
            oldest = await auditor.checkpoint_page(session, up_to=older.older)
            assert [row.tree_size for row in oldest.rows] == sizes[::-1][2 * page_size :]
            assert oldest.older is None
            assert oldest.newer == sizes[page_size + 10 - 1]  # the page just above it
            between = await auditor.checkpoint_page(session, up_to=sizes[20] + 1)
            assert [row.tree_size for row in between.rows] == sizes[20::-1]
            assert (await auditor.checkpoint_page(session, up_to=2)).rows == []
    finally:
        await engine.dispose()


def test_the_dashboard_shows_the_apis_figures_and_never_a_withheld_one(
    audit_world: AuditWorld,
) -> None:
    with (
        audit_world.signed_in(ADMINISTRATOR) as browser,
        added_audit_entries(audit_world.world.hub, action="report.efficiency") as reads,
    ):
        page = browser.get("/efficiency").text
    with audit_world.world.hub.admin() as admin:
        report = admin.call("GET", "/v1/reports/efficiency")
    assert f"Efficiency: {report['period']}" in page
    for name, value in report["total"].items():
        cell = re.search(rf'data-figure="{name}">(.*?)</dd>', page, re.S)
        if cell is None:
            continue
        if name in report["total"]["suppressed"]:
            assert "withheld" in cell.group(1), name
        elif isinstance(value, int):
            assert cell.group(1).strip() == f"{value:,}", name
    assert "<svg" in page
    assert 'role="img"' in page
    assert [(r["person"], r["query"]) for r in reads] == [
        (ADMINISTRATOR, {"period": report["period"], "format": "html"})
    ]


def test_one_exchange_is_withheld_on_the_dashboard(audit_world: AuditWorld) -> None:
    with audit_world.signed_in(AUDITOR) as browser:
        page = browser.get("/efficiency").text
    exchanges = re.search(r'data-figure="exchanges">(.*?)</dd>', page, re.S)
    assert exchanges is not None
    assert "withheld" in exchanges.group(1)  # fewer than 5: it could single out a person


def test_the_dashboard_takes_a_quarter_or_a_year_and_refuses_another_period(
    audit_world: AuditWorld,
) -> None:
    with audit_world.signed_in(AUDITOR) as browser:
        assert "Efficiency: 2026-Q4" in browser.get("/efficiency?period=2026-Q4").text
        assert "Efficiency: 2026<" in browser.get("/efficiency?period=2026").text
        refused = browser.get("/efficiency?period=last-week")
    assert refused.status_code == 400
    assert 'href="#period"' in refused.text


@pytest.mark.parametrize(
    ("username", "path", "allowed"),
    [
        (STEWARD, "/audit", False),
        (STEWARD, "/efficiency", False),
        (ADMINISTRATOR, "/audit", False),
        (ADMINISTRATOR, "/efficiency", True),
        (AUDITOR, "/audit", True),
        (AUDITOR, "/efficiency", True),
        (STEWARD, "/checkpoints", True),  # public in the API
    ],
)
def test_roles_are_the_apis(
    audit_world: AuditWorld, username: str, path: str, allowed: bool
) -> None:
    with audit_world.signed_in(username) as browser:
        answer = browser.get(path)
        assert answer.status_code == (200 if allowed else 403), answer.text
        navigation = re.search(r'id="navigation">(.*?)</ul>', answer.text, re.S)
        assert navigation is not None
        assert (f'href="{path}"' in navigation.group(1)) == (
            allowed and path != "/checkpoints"
        ) or (path == "/checkpoints" and username == AUDITOR)


def test_a_stewards_search_and_entry_read_are_refused_and_audited(
    audit_world: AuditWorld,
) -> None:
    hub = audit_world.world.hub
    with (
        audit_world.signed_in(STEWARD) as browser,
        added_audit_entries(hub, action="audit.query") as queries,
        added_audit_entries(hub, action="audit.read") as reads,
        added_audit_entries(hub, action="report.efficiency") as reports,
    ):
        token = csrf_token(browser.get("/account").text)
        assert (
            browser.post("/audit", data={"csrf_token": token, "subject": SUBJECT}).status_code
            == 403
        )
        assert browser.get(f"/audit/entries/{audit_world.index}").status_code == 403
        assert browser.get("/efficiency").status_code == 403
        export = browser.post("/audit/export", data={"csrf_token": token, "format": "csv"})
        assert export.status_code == 403
    for entries in (queries, reads, reports):
        mine = [e for e in entries if e["person"] == STEWARD]
        assert [(e["outcome"], e["reason"]) for e in mine] == [("refused", "forbidden")]
