"""The stewards' pages over plain HTTP (as a browser without JavaScript): the inbox
and the outbox, asking for access field by field, approving two of the fields,
refusing with a reason, grants and their revocation, registering an item and a new
version with the registry's verdict first, deprecating and retiring. Roles as the
API enforces them, and every change and refusal audited. SQLite and PostgreSQL; the
browser itself is in test_steward_browser.py."""

import json
import re
from collections.abc import Iterator
from html import unescape

import httpx
import pytest

from tests.hub.console.console_world import (
    AUDITOR,
    OTHER_STEWARD,
    STEWARD,
    ConsoleWorld,
    console_world,
    csrf_token,
    post_served_form,
)
from tests.hub_testing import DATABASES, TEST_PASSWORD, added_audit_entries, module_database

ITEM = "person.residential-address"  # civil-registry's (STEWARD's), conditional


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleWorld]:
    with console_world(
        database_url=module_database(request, tmp_path_factory),
        data_dir=tmp_path_factory.mktemp("hub"),
    ) as built:
        yield built


def submit(
    browser: httpx.Client, page: str, action: str, fields: dict[str, str], *, offered: bool = True
) -> httpx.Response:
    """Open ``page`` and post its form to ``action`` (as served: post_served_form), with
    the page's CSRF token; ``offered=False`` posts to ``action`` although ``page`` no
    longer offers that form (a form sent twice, from a stale tab)."""
    shown = browser.get(page)
    assert shown.status_code == 200, shown.text
    data = {"csrf_token": csrf_token(shown.text), **fields}
    if not offered:
        return browser.post(action, data=data)
    return post_served_form(browser, shown.text, action, data)


def fields_offered(html: str) -> dict[str, str]:
    """The field checkboxes of a page: field name -> the checkbox's form name."""
    return {
        value: name
        for name, value in re.findall(r'name="(field-\d+)" type="checkbox" value="([^"]+)"', html)
    }


def ask(browser: httpx.Client, item: str, wanted: list[str], purpose: str) -> str:
    """Ask for ``wanted`` of ``item`` through its request page; the new request's id."""
    page = browser.get(f"/catalogue/{item}/request")
    offered = fields_offered(page.text)
    form = {
        "csrf_token": csrf_token(page.text),
        "purpose": purpose,
        "purpose_text": "Checking the address a person gave on their tax return",
        "legal_basis": "Taxation Act § 12",
        "consumer": "tax",
        **{offered[name]: name for name in wanted},
    }
    answer = post_served_form(browser, page.text, f"/catalogue/{item}/request", form)
    assert answer.status_code == 303, answer.text
    found = re.fullmatch(r"/requests/([0-9a-f]{32})", answer.headers["location"])
    assert found is not None, answer.headers["location"]
    return found.group(1)


def test_a_request_field_by_field_approved_for_two_fields_then_revoked(
    world: ConsoleWorld,
) -> None:
    with world.signed_in(OTHER_STEWARD) as tomas:
        with added_audit_entries(world.hub, action="access.request") as asked:
            request_id = ask(tomas, ITEM, ["street", "city", "postal_code"], "tax-assessment")
        assert [(e["outcome"], e["department"], e["item"]) for e in asked] == [("ok", "tax", ITEM)]
        mine = tomas.get(f"/requests/{request_id}")
        assert "Waiting for a decision" in mine.text
        assert 'id="approve"' not in mine.text  # the consumer never decides
        assert 'id="withdraw"' in mine.text
        assert request_id in tomas.get("/outbox").text
        assert request_id not in tomas.get("/inbox").text
    with world.signed_in(STEWARD) as cecilia:
        assert request_id in cecilia.get("/inbox").text
        page = cecilia.get(f"/requests/{request_id}")
        offered = fields_offered(page.text)
        assert sorted(offered) == ["city", "postal_code", "street"]
        with added_audit_entries(world.hub, action="access.approve") as approved:
            answer = cecilia.post(
                f"/requests/{request_id}/approve",
                data={
                    "csrf_token": csrf_token(page.text),
                    offered["street"]: "street",
                    offered["city"]: "city",
                },
            )
        assert (answer.status_code, answer.headers["location"]) == (
            303,
            f"/requests/{request_id}",
        )
        assert [(e["outcome"], e["fields"]) for e in approved] == [("ok", ["city", "street"])]
        decided = cecilia.get(f"/requests/{request_id}").text
        assert "Approved" in decided
        grant_id = re.search(r'href="/grants/([0-9a-f]{32})"', decided)
        assert grant_id is not None
        grant_page = f"/grants/{grant_id.group(1)}"
        assert grant_id.group(1) in cecilia.get("/grants").text
        empty = submit(cecilia, grant_page, f"{grant_page}/revoke", {"reason": ""})
        assert empty.status_code == 400
        assert 'class="govuk-error-summary"' in empty.text
        with added_audit_entries(world.hub, action="grant.revoke") as revoked:
            answer = submit(
                cecilia, grant_page, f"{grant_page}/revoke", {"reason": "The purpose ended"}
            )
        assert answer.status_code == 303
        assert [(e["outcome"], e["reason"]) for e in revoked] == [("ok", "The purpose ended")]
        shown = cecilia.get(grant_page).text
        assert "Revoked" in shown
        assert 'id="revoke"' not in shown


def test_the_consumers_steward_cannot_approve_and_a_forged_post_is_refused_and_audited(
    world: ConsoleWorld,
) -> None:
    with world.signed_in(OTHER_STEWARD) as tomas:
        request_id = ask(tomas, ITEM, ["city"], "benefit-eligibility")
        page = tomas.get(f"/requests/{request_id}")
        with added_audit_entries(world.hub, action="access.approve") as refused:
            forged = tomas.post(
                f"/requests/{request_id}/approve",
                data={"csrf_token": csrf_token(page.text), "field-0": "city"},
            )
        assert forged.status_code == 403
        assert "Your roles do not allow this change" in forged.text
        assert [(e["outcome"], e["reason"]) for e in refused] == [("refused", "forbidden")]
    with world.signed_in(AUDITOR) as ivo:
        assert ivo.get("/inbox").status_code == 403
        shown = ivo.get(f"/requests/{request_id}")  # auditors read every request
        assert shown.status_code == 200
        assert 'id="approve"' not in shown.text
        assert 'id="refuse"' not in shown.text
        forged = ivo.post(
            f"/requests/{request_id}/refuse",
            data={"csrf_token": csrf_token(shown.text), "reason": "no"},
        )
        assert forged.status_code == 403
    with world.signed_in(STEWARD) as cecilia:
        assert "Waiting for a decision" in cecilia.get(f"/requests/{request_id}").text
        without = cecilia.post(f"/requests/{request_id}/refuse", data={"reason": "no"})
        assert without.status_code == 403  # no CSRF token: nothing changes


def test_refusing_needs_a_reason_and_the_asker_reads_it(world: ConsoleWorld) -> None:
    with world.signed_in(OTHER_STEWARD) as tomas:
        request_id = ask(tomas, ITEM, ["postal_code"], "debt-collection")
    with world.signed_in(STEWARD) as cecilia:
        page = f"/requests/{request_id}"
        empty = submit(cecilia, page, f"{page}/refuse", {"reason": ""})
        assert empty.status_code == 400
        assert '<a href="#refuse-reason">Enter the reason</a>' in empty.text
        with added_audit_entries(world.hub, action="access.refuse") as refused:
            answer = submit(cecilia, page, f"{page}/refuse", {"reason": "No legal basis"})
        assert answer.status_code == 303
        assert [(e["outcome"], e["reason"]) for e in refused] == [("ok", "No legal basis")]
        again = submit(cecilia, page, f"{page}/refuse", {"reason": "twice"}, offered=False)
        assert again.status_code == 409  # decided already: the service says so
        assert "This request has been decided or withdrawn already" in again.text
    with world.signed_in(OTHER_STEWARD) as tomas:
        assert "No legal basis" in tomas.get(page).text


def test_an_overdue_request_stands_out_in_words(world: ConsoleWorld) -> None:
    with world.signed_in(OTHER_STEWARD) as tomas:
        request_id = ask(tomas, "person.identity", ["given_name"], "tax-assessment")
    world.clock.advance(30 * 24 * 3600)
    with world.signed_in(STEWARD) as cecilia:
        inbox = cecilia.get("/inbox").text
        row = re.search(rf"/requests/{request_id}.*?</tr>", inbox, re.S)
        assert row is not None
        assert "Overdue" in row.group(0)
        assert "overdue" in inbox
        assert "Overdue" in cecilia.get(f"/requests/{request_id}").text


SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "plate": {"type": "string", "title": "Plate"},
        "owner_name": {"type": "string", "x-personal": True},
    },
    "required": ["plate"],
}


def test_registering_an_item_shows_the_verdict_first(world: ConsoleWorld) -> None:
    form = {
        "id": "civil.test-register",
        "title": "A test item",
        "owner": "civil-registry",
        "sharing_class": "conditional",
        "classification": "personal",
        "legal_basis": "Test Act § 1",
        "tags": "test, vehicles",
        "compatibility": "BACKWARD",
        "schema": json.dumps(SCHEMA),
    }
    with world.signed_in(STEWARD) as cecilia:
        broken = submit(
            cecilia, "/register", "/register", {**form, "schema": "{", "action": "check"}
        )
        assert broken.status_code == 400
        assert '<a href="#schema">' in broken.text
        with added_audit_entries(world.hub, action="registry.item.put") as put:
            checked = submit(cecilia, "/register", "/register", {**form, "action": "check"})
            assert checked.status_code == 200
            assert "The registry accepts this item" in checked.text
            assert re.search(r"owner_name.*?Personal", checked.text, re.S)
            assert cecilia.get("/catalogue/civil.test-register").status_code == 404
            made = submit(cecilia, "/register", "/register", {**form, "action": "register"})
            assert (made.status_code, made.headers["location"]) == (
                303,
                "/catalogue/civil.test-register",
            )
        assert [(e["outcome"], e["item"]) for e in put] == [("ok", "civil.test-register")]
        again = submit(cecilia, "/register", "/register", {**form, "action": "check"})
        assert again.status_code == 409
    with world.signed_in(OTHER_STEWARD) as tomas:
        mine = {**form, "id": "civil.not-mine", "action": "register"}
        other = submit(tomas, "/register", "/register", mine)
        assert other.status_code == 403
        assert "not a steward" in other.text


def shown_schema(html: str) -> str:
    found = re.search(r'id="schema"[^>]*>(.*?)</textarea>', html, re.S)
    assert found is not None
    return unescape(found.group(1))


def test_a_new_version_is_judged_before_it_is_registered(world: ConsoleWorld) -> None:
    item = "person.family-relations"
    page = f"/catalogue/{item}/versions/new"
    with world.signed_in(STEWARD) as cecilia:
        latest = shown_schema(cecilia.get(page).text)
        schema = json.loads(latest)
        changed = json.loads(latest)
        changed["properties"]["marital_status"] = {"type": "integer"}
        schema["properties"]["note"] = {"type": "string"}
        with added_audit_entries(world.hub, action="registry.item.version") as added:
            unchanged = submit(cecilia, page, page, {"schema": latest, "action": "check"})
            assert "Unchanged: this is version 1" in unchanged.text
            check = {"schema": json.dumps(changed), "action": "check"}
            refused = submit(cecilia, page, page, check)
            assert refused.status_code == 409, refused.text
            assert "not compatible" in refused.text
            good = submit(cecilia, page, page, {"schema": json.dumps(schema), "action": "check"})
            assert "Compatible: it would be version 2" in good.text, good.text
            made = submit(cecilia, page, page, {"schema": json.dumps(schema), "action": "register"})
            assert made.status_code == 303
        assert [(e["outcome"], e["version"]) for e in added] == [("ok", 2)]
        assert "Fields of version 2" in cecilia.get(f"/catalogue/{item}").text
    with world.signed_in(OTHER_STEWARD) as tomas:
        assert tomas.get(page).status_code == 403


def test_deprecating_then_retiring_an_item(world: ConsoleWorld) -> None:
    item = "person.death"
    page = f"/catalogue/{item}/lifecycle"
    with world.signed_in(OTHER_STEWARD) as tomas:
        assert tomas.get(page).status_code == 403
        shown = tomas.get(f"/catalogue/{item}")
        assert 'id="lifecycle-link"' not in shown.text
        token = csrf_token(shown.text)
        forged = tomas.post(f"/catalogue/{item}/retire", data={"csrf_token": token})
        assert forged.status_code == 403
    with world.signed_in(STEWARD) as cecilia:
        assert 'id="lifecycle-link"' in cecilia.get(f"/catalogue/{item}").text
        with added_audit_entries(world.hub, action="registry.item.deprecate") as deprecated:
            assert submit(cecilia, page, f"/catalogue/{item}/deprecate", {}).status_code == 303
        assert [e["outcome"] for e in deprecated] == ["ok"]
        assert "Deprecated" in cecilia.get(f"/catalogue/{item}").text
        assert submit(cecilia, page, f"/catalogue/{item}/retire", {}).status_code == 303
        assert "Retired" in cecilia.get(f"/catalogue/{item}").text
        again = submit(cecilia, page, f"/catalogue/{item}/deprecate", {}, offered=False)
        assert again.status_code == 409
        assert 'class="govuk-error-summary"' in again.text


def test_a_third_departments_steward_sees_no_request_and_cannot_approve_it(
    world: ConsoleWorld,
) -> None:
    with world.hub.admin() as admin:
        body = {
            "password": TEST_PASSWORD,
            "roles": [{"role": "steward", "department": "social-welfare"}],
        }
        admin.call("PUT", "/v1/admin/people/sirje", body)
    with world.signed_in(OTHER_STEWARD) as tomas:
        request_id = ask(tomas, ITEM, ["city"], "housing-benefit")
    with world.signed_in("sirje") as sirje:
        assert sirje.get(f"/requests/{request_id}").status_code == 404
        token = csrf_token(sirje.get("/account").text)
        forged = sirje.post(
            f"/requests/{request_id}/approve", data={"csrf_token": token, "field-0": "city"}
        )
        assert forged.status_code == 404
    with world.signed_in(STEWARD) as cecilia:
        assert "Waiting for a decision" in cecilia.get(f"/requests/{request_id}").text
