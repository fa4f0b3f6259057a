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
    sign_in,
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
    found = re.fullmatch(r"/requests/([0-9a-f]{32})\?done=request-sent", answer.headers["location"])
    assert found is not None, answer.headers["location"]
    return found.group(1)


def success_notice(html: str) -> str | None:
    """The text of the page's success banner (macros.html, success), if it has one."""
    found = re.search(r'role="alert".*?id="notice">(.*?)</p>', html, re.S)
    return unescape(found.group(1)) if found else None


def test_a_request_field_by_field_approved_for_two_fields_then_revoked(
    world: ConsoleWorld,
) -> None:
    with world.signed_in(OTHER_STEWARD) as tomas:
        with added_audit_entries(world.hub, action="access.request") as asked:
            request_id = ask(tomas, ITEM, ["street", "city", "postal_code"], "tax-assessment")
        assert [(e["outcome"], e["department"], e["item"]) for e in asked] == [("ok", "tax", ITEM)]
        mine = tomas.get(f"/requests/{request_id}?done=request-sent")
        assert success_notice(mine.text) == (
            "Your request is sent. The owner's stewards decide, by its deadline."
        )
        assert "Waiting for a decision" in mine.text
        # Titles, as the ask form and the catalogue show them, the codes beside them.
        assert "Assessing taxes" in mine.text
        assert '<h1 class="govuk-heading-l">tax asks for Residential address</h1>' in mine.text
        assert re.search(r"Street address <span[^>]*>\(street\)</span>", mine.text)
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
            f"/requests/{request_id}?done=approved",
        )
        assert [(e["outcome"], e["fields"]) for e in approved] == [("ok", ["city", "street"])]
        decided = cecilia.get(answer.headers["location"]).text
        assert success_notice(decided) == (
            "The request is approved: the department may use the ticked fields."
        )
        assert "Approved" in decided
        grant_id = re.search(r'href="/grants/([0-9a-f]{32})"', decided)
        assert grant_id is not None
        grant_page = f"/grants/{grant_id.group(1)}"
        assert grant_id.group(1) in cecilia.get("/grants").text
        empty = submit(cecilia, grant_page, f"{grant_page}/revoke", {"reason": ""})
        assert empty.status_code == 400
        assert 'class="govuk-error-summary"' in empty.text
        with added_audit_entries(world.hub, action="grant.revoke") as revoked:
            reason = {"reason": "The purpose ended"}
            question = submit(cecilia, grant_page, f"{grant_page}/revoke", reason)
            assert question.status_code == 200  # asked first: nothing changed yet
            assert "Yes, revoke the grant" in question.text
            assert "The purpose ended" in question.text
            assert "Active" in cecilia.get(grant_page).text
            assert revoked == []
            confirm = {"csrf_token": csrf_token(question.text), **reason, "confirm": "yes"}
            answer = post_served_form(cecilia, question.text, f"{grant_page}/revoke", confirm)
        assert (answer.status_code, answer.headers["location"]) == (
            303,
            f"{grant_page}?done=revoked",
        )
        assert [(e["outcome"], e["reason"]) for e in revoked] == [("ok", "The purpose ended")]
        shown = cecilia.get(answer.headers["location"]).text
        assert success_notice(shown) == (
            "The grant is revoked. The department's next query is refused."
        )
        assert "Revoked" in shown
        assert 'id="revoke"' not in shown
        assert "City or settlement" in shown  # the fields granted, by their titles
        assert '<dt class="govuk-summary-list__key">Fields granted</dt>' in shown
        assert success_notice(cecilia.get(grant_page).text) is None  # only after the change


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
        assert (answer.status_code, answer.headers["location"]) == (303, f"{page}?done=refused")
        assert success_notice(cecilia.get(answer.headers["location"]).text) == (
            "The request is refused. The department that asked reads your reason."
        )
        assert [(e["outcome"], e["reason"]) for e in refused] == [("ok", "No legal basis")]
        again = submit(cecilia, page, f"{page}/refuse", {"reason": "twice"}, offered=False)
        assert again.status_code == 409  # decided already: the service says so
        assert "This request has been decided or withdrawn already" in again.text
    with world.signed_in(OTHER_STEWARD) as tomas:
        assert "No legal basis" in tomas.get(page).text


HIDDEN = "Remove the invisible characters, such as direction marks and zero-width spaces"


def test_a_reason_or_purpose_with_an_invisible_character_is_a_field_error_not_a_failure(
    world: ConsoleWorld,
) -> None:
    """Decision 0072: the API refuses a bidirectional control or a zero-width character
    in text people read; the forms say so by the field (before: stored as typed)."""
    with world.signed_in(OTHER_STEWARD) as tomas:
        page = tomas.get(f"/catalogue/{ITEM}/request")
        form = {
            "csrf_token": csrf_token(page.text),
            "purpose": "debt-collection",
            "purpose_text": "Checking\u200b the address",
            "legal_basis": "Taxation Act \u202e21 \u00a7",
            "consumer": "tax",
            **{name: value for value, name in fields_offered(page.text).items()},
        }
        answer = post_served_form(tomas, page.text, f"/catalogue/{ITEM}/request", form)
        assert answer.status_code == 400, answer.text
        assert f'<a href="#purpose_text">{HIDDEN}</a>' in answer.text
        assert f'<a href="#legal_basis">{HIDDEN}</a>' in answer.text
        request_id = ask(tomas, ITEM, ["postal_code"], "debt-collection")
    with world.signed_in(STEWARD) as cecilia:
        page = f"/requests/{request_id}"
        ticked = {fields_offered(cecilia.get(page).text)["postal_code"]: "postal_code"}
        for verb, field, form in (
            ("refuse", "refuse-reason", {}),
            ("approve", "approve-reason", ticked),
        ):
            answer = submit(cecilia, page, f"{page}/{verb}", {"reason": "No \u202ebasis", **form})
            assert answer.status_code == 400, answer.text
            assert f'<a href="#{field}">{HIDDEN}</a>' in answer.text
        refused = submit(cecilia, page, f"{page}/refuse", {"reason": "No legal basis"})
        assert refused.status_code == 303, refused.text


def test_the_asker_withdraws_a_waiting_request_and_is_told_so(world: ConsoleWorld) -> None:
    with world.signed_in(OTHER_STEWARD) as tomas:
        request_id = ask(tomas, ITEM, ["country"], "pension-calculation")
        page = f"/requests/{request_id}"
        with added_audit_entries(world.hub, action="access.withdraw") as withdrawn:
            answer = submit(tomas, page, f"{page}/withdraw", {})
        assert (answer.status_code, answer.headers["location"]) == (303, f"{page}?done=withdrawn")
        assert [e["outcome"] for e in withdrawn] == ["ok"]
        shown = tomas.get(answer.headers["location"]).text
        assert success_notice(shown) == "The request is withdrawn."
        assert success_notice(tomas.get(f"{page}?done=<b>anything</b>").text) is None


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


def test_the_register_page_says_what_a_schema_needs_with_an_example_that_passes(
    world: ConsoleWorld,
) -> None:
    """An outside review (150, M3): the page asked for a raw JSON Schema and said nothing
    of what the registry requires (Draft 2020-12's $schema, an object, personal marks),
    so a first try was refused in JSON Schema's terms. The hint says it, and the example
    it shows is one the registry accepts as it is."""
    with world.signed_in(STEWARD) as cecilia:
        page = cecilia.get("/register").text
        hint = unescape(re.search(r'<div id="schema-hint"[^>]*>(.*?)</div>', page, re.S)[1])
        assert '"$schema": "https://json-schema.org/draft/2020-12/schema"' in hint
        assert '"x-personal": true' in hint
        assert 'aria-describedby="schema-hint"' in page
        example = unescape(re.search(r'<pre class="app-code">(.*?)</pre>', page, re.S)[1])
        form = {
            "id": "civil.example-schema",
            "title": "From the example",
            "owner": "civil-registry",
            "sharing_class": "conditional",
            "classification": "personal",
            "legal_basis": "Test Act § 1",
            "compatibility": "BACKWARD",
            "schema": example,
            "action": "check",
        }
        checked = submit(cecilia, "/register", "/register", form)
        assert checked.status_code == 200, checked.text
        assert "The registry accepts this item" in checked.text


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
                "/catalogue/civil.test-register?done=item-registered",
            )
        # the person is named, as the API's entries name them (they were not)
        assert [(e["outcome"], e["item"], e.get("person")) for e in put] == [
            ("ok", "civil.test-register", STEWARD)
        ]
        shown = cecilia.get(made.headers["location"]).text
        assert success_notice(shown) == "The item is registered: it is in the catalogue."
        assert success_notice(cecilia.get("/catalogue/civil.test-register").text) is None
        again = submit(cecilia, "/register", "/register", {**form, "action": "check"})
        assert again.status_code == 409
    with world.signed_in(OTHER_STEWARD) as tomas:
        mine = {**form, "id": "civil.not-mine", "action": "register"}
        other = submit(tomas, "/register", "/register", mine)
        assert other.status_code == 403
        assert "not a steward" in other.text


def error_summary(html: str) -> list[tuple[str, str]]:
    """The page's error summary: (the field it links to, the message) for each entry."""
    found = re.search(r'class="govuk-error-summary".*?</ul>', html, re.S)
    assert found is not None, "the page has no error summary"
    entries = re.findall(r'<li><a href="#([^"]+)">(.*?)</a></li>', found.group(0))
    return [(field, unescape(message)) for field, message in entries]


def test_the_register_form_names_every_mistake_at_once_in_a_stewards_words(
    world: ConsoleWorld,
) -> None:
    form = {
        "id": "person.Näme",
        "title": "",
        "owner": "civil-registry",
        "sharing_class": "conditional",
        "classification": "personal",
        "legal_basis": "Test Act § 2",
        "compatibility": "BACKWARD",
        "schema": '{"type": "object" "properties": {}}',
    }
    with world.signed_in(STEWARD) as cecilia:
        with added_audit_entries(world.hub, action="registry.item.put") as put:
            checked = submit(cecilia, "/register", "/register", {**form, "action": "check"})
            assert put == []  # a check changes nothing, and records nothing
            made = submit(cecilia, "/register", "/register", {**form, "action": "register"})
        assert checked.status_code == made.status_code == 400
        summary = error_summary(checked.text)
        assert [field for field, _ in summary] == ["id", "title", "schema"]
        assert summary[2][1] == (
            "The schema is not valid JSON: a comma (,) is missing at line 1, column 19"
        )
        assert not [message for _, message in summary if "body" in message]  # API wording
        assert error_summary(made.text) == summary
        assert "The hub refused this change" not in checked.text + made.text
        assert [(e["outcome"], e["reason"]) for e in put] == [("refused", "invalid-request")]
        valid = {**form, "id": "person.test-name", "title": "A name", "action": "check"}
        duplicated = submit(
            cecilia, "/register", "/register", {**valid, "schema": '{"a": 1, "a": 2}'}
        )
        assert error_summary(duplicated.text) == [
            ("schema", "The schema is not valid JSON: duplicate key 'a'")
        ]
        # in Chinese, what is wrong is said in Chinese too (an outside review: Python's
        # English words were put into the Chinese sentence)
        assert cecilia.get("/language/zh-Hans", params={"next": "/register"}).status_code == 303
        chinese = submit(cecilia, "/register", "/register", {**form, "action": "check"})
        assert error_summary(chinese.text)[2][1] == (
            "架构不是有效的 JSON：第 1 行第 19 列缺少逗号（,）"  # noqa: RUF001
        )
        assert cecilia.get("/language/en", params={"next": "/register"}).status_code == 303
        hidden = {**valid, "schema": "{}", "title": "A\u202ename", "tags": "a, b\u200b"}
        assert error_summary(submit(cecilia, "/register", "/register", hidden).text) == [
            ("title", HIDDEN),
            ("tags", HIDDEN),
        ]


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
            assert "The registry's reason:" in refused.text  # a check's verdict
            good = submit(cecilia, page, page, {"schema": json.dumps(schema), "action": "check"})
            assert "Compatible: it would be version 2" in good.text, good.text
            made = submit(cecilia, page, page, {"schema": json.dumps(schema), "action": "register"})
            assert made.status_code == 303
        assert [(e["outcome"], e["version"], e.get("person")) for e in added] == [
            ("ok", 2, STEWARD)
        ]
        assert made.headers["location"] == f"/catalogue/{item}?done=version-registered"
        shown = cecilia.get(made.headers["location"]).text
        assert success_notice(shown) == (
            "The new version is registered: it is the item's latest version."
        )
        assert "Fields of version 2" in shown
    with world.signed_in(OTHER_STEWARD) as tomas:
        assert tomas.get(page).status_code == 403


def test_deprecating_then_retiring_an_item_each_asked_first_saying_what_it_means(
    world: ConsoleWorld,
) -> None:
    """Each change asks first, as revoking a grant does (a review: retiring, which
    cannot be undone, was one click): nothing changes, and nothing is audited, until
    the question's "Yes" (confirm=yes); then the item's page says what was done."""
    item = "person.death"
    page = f"/catalogue/{item}/lifecycle"
    with world.signed_in(OTHER_STEWARD) as tomas:
        assert tomas.get(page).status_code == 403
        shown = tomas.get(f"/catalogue/{item}")
        assert 'id="lifecycle-link"' not in shown.text
        token = csrf_token(shown.text)
        with added_audit_entries(world.hub, action="registry.item.retire") as forged_entries:
            forged = tomas.post(f"/catalogue/{item}/retire", data={"csrf_token": token})
            assert forged.status_code == 403  # not asked: refused at once, and audited
            confirmed = {"csrf_token": token, "confirm": "yes"}
            assert tomas.post(f"/catalogue/{item}/retire", data=confirmed).status_code == 403
        assert [(e["outcome"], e["reason"]) for e in forged_entries] == [
            ("refused", "not-steward"),
            ("refused", "not-steward"),
        ]
    with world.signed_in(STEWARD) as cecilia:
        assert 'id="lifecycle-link"' in cecilia.get(f"/catalogue/{item}").text
        with added_audit_entries(world.hub, action="registry.item.deprecate") as deprecated:
            question = submit(cecilia, page, f"/catalogue/{item}/deprecate", {})
            assert question.status_code == 200  # asked first: nothing changed yet
            assert '<h1 class="govuk-heading-l">Deprecate Death registration?</h1>' in question.text
            assert "Deprecating cannot be undone" in question.text
            assert "the item is still served" in question.text
            assert "Active" in cecilia.get(f"/catalogue/{item}").text
            assert deprecated == []
            confirm = {"csrf_token": csrf_token(question.text), "confirm": "yes"}
            answer = post_served_form(
                cecilia, question.text, f"/catalogue/{item}/deprecate", confirm
            )
        assert (answer.status_code, answer.headers["location"]) == (
            303,
            f"/catalogue/{item}?done=deprecated",
        )
        assert [(e["outcome"], e.get("person")) for e in deprecated] == [("ok", STEWARD)]
        shown = cecilia.get(answer.headers["location"]).text
        assert success_notice(shown) == (
            "The item is deprecated: it is still served, marked as deprecated."
        )
        assert "Deprecated" in shown
        with added_audit_entries(world.hub, action="registry.item.retire") as retired:
            question = submit(cecilia, page, f"/catalogue/{item}/retire", {})
            assert question.status_code == 200
            assert '<h1 class="govuk-heading-l">Retire Death registration?</h1>' in question.text
            assert "Retiring is final: it cannot be undone" in question.text
            assert "every record query for the item is refused, under every grant" in question.text
            assert "Deprecated" in cecilia.get(f"/catalogue/{item}").text
            assert retired == []
            confirm = {"csrf_token": csrf_token(question.text), "confirm": "yes"}
            answer = post_served_form(cecilia, question.text, f"/catalogue/{item}/retire", confirm)
        assert (answer.status_code, answer.headers["location"]) == (
            303,
            f"/catalogue/{item}?done=retired",
        )
        assert [(e["outcome"], e.get("person")) for e in retired] == [("ok", STEWARD)]
        shown = cecilia.get(answer.headers["location"]).text
        assert success_notice(shown) == (
            "The item is retired: every query for it is refused from now on."
        )
        assert "Retired" in shown
        again = submit(cecilia, page, f"/catalogue/{item}/deprecate", {}, offered=False)
        assert again.status_code == 409  # a stale page's form: not asked, refused
        assert 'class="govuk-error-summary"' in again.text


def test_a_retired_or_unshared_item_has_no_ask_form_and_its_refusal_is_the_same_page(
    world: ConsoleWorld,
) -> None:
    """The ask page of an item no department may ask for answers as a request sent to
    it is answered (a review: the GET showed the whole form, only its POST said 410):
    the service's refusal, and no form. A form from a page opened before the item
    closed is refused and audited."""
    item = "civil.test-closed"
    document = {
        "id": item,
        "title": "A closed item",
        "owner": "civil-registry",
        "sharing_class": "conditional",
        "classification": "personal",
        "legal_basis": {"text": "Test Act § 3"},
        "schema": SCHEMA,
    }
    with world.hub.admin() as admin:
        admin.call("PUT", f"/v1/admin/items/{item}", document)
    with world.signed_in(OTHER_STEWARD) as tomas:
        stale = tomas.get(f"/catalogue/{item}/request")
        assert stale.status_code == 200
        with world.hub.admin() as admin:
            admin.call("POST", f"/v1/admin/items/{item}/retire")
        shown = tomas.get(f"/catalogue/{item}/request")
        assert shown.status_code == 410
        assert f'action="/catalogue/{item}/request"' not in shown.text
        assert error_summary(shown.text) == [("closed", "This item is retired")]
        assert "No department can ask for access to this item" in shown.text
        form = {
            "csrf_token": csrf_token(stale.text),
            "consumer": "tax",
            "purpose": "tax-assessment",
            "purpose_text": "Checking a vehicle",
            "legal_basis": "Taxation Act § 12",
            "field-0": "plate",
        }
        with added_audit_entries(world.hub, action="access.request") as asked:
            sent = post_served_form(tomas, stale.text, f"/catalogue/{item}/request", form)
            assert sent.status_code == 410
            assert error_summary(sent.text) == error_summary(shown.text)
            assert f'action="/catalogue/{item}/request"' not in sent.text
            half = {**form, "purpose_text": ""}  # the form's own check comes after
            assert tomas.post(f"/catalogue/{item}/request", data=half).status_code == 410
        assert [(e["outcome"], e["reason"], e["item"]) for e in asked] == [
            ("refused", "item-retired", item),
            ("refused", "item-retired", item),
        ]
    with world.signed_in(STEWARD) as cecilia:
        unshared = cecilia.get("/catalogue/tax.audit-risk-assessment/request")
        assert unshared.status_code == 409
        assert error_summary(unshared.text) == [("closed", "This item is not shared")]
        assert 'action="/catalogue/tax.audit-risk-assessment/request"' not in unshared.text


def test_checking_an_item_for_a_department_one_does_not_steward_is_refused_and_audited(
    world: ConsoleWorld,
) -> None:
    """As registering it is (a review: the check said "The registry accepts this item"
    for another department's owner, the registration then 403)."""
    form = {
        "id": "tax.not-mine",
        "title": "Not mine",
        "owner": "tax",
        "sharing_class": "conditional",
        "classification": "personal",
        "legal_basis": "Test Act § 4",
        "compatibility": "BACKWARD",
        "schema": json.dumps(SCHEMA),
        "action": "check",
    }
    with world.signed_in(STEWARD) as cecilia:
        with added_audit_entries(world.hub, action="route.refused") as refusals:
            checked = submit(cecilia, "/register", "/register", form)
        assert checked.status_code == 403
        assert "The registry accepts this item" not in checked.text
        assert error_summary(checked.text) == [
            ("owner", "You are not a steward of the department that owns this item")
        ]
        registered = submit(cecilia, "/register", "/register", {**form, "action": "register"})
        assert registered.status_code == 403
    assert [
        (e["outcome"], e["reason"], e["target"], e["person"], e["department"], e["item"])
        for e in refusals
    ] == [("refused", "not-steward", "POST /register", STEWARD, "tax", "tax.not-mine")]


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


@pytest.mark.parametrize(
    ("username", "path", "audience"),
    [
        (STEWARD, "/audit/entries/49", "The audit log is for auditors."),
        (STEWARD, "/efficiency", "The efficiency dashboard is for auditors and administrators."),
        (STEWARD, "/admin/people", "The administration pages are for administrators."),
        (AUDITOR, "/inbox", "A department's requests are for its data stewards."),
        (AUDITOR, "/register", "Registering a data item is for data stewards."),
        (
            OTHER_STEWARD,
            f"/catalogue/{ITEM}/versions/new",
            "Changing a data item is for the data stewards of the department that owns it.",
        ),
    ],
)
def test_every_page_a_role_cannot_use_says_so_the_same_way_naming_the_page(
    world: ConsoleWorld, username: str, path: str, audience: str
) -> None:
    with world.signed_in(username) as browser:
        answer = browser.get(path)
    assert answer.status_code == 403
    assert "<title>You cannot use this page" in answer.text
    assert '<h1 class="govuk-heading-l">You cannot use this page</h1>' in answer.text
    found = re.search(r'id="who-may-use">(.*?)</p>', answer.text, re.S)
    assert found is not None
    assert unescape(found.group(1)).startswith(audience)


def test_a_link_with_done_shows_no_success_the_browser_did_not_cause(
    world: ConsoleWorld,
) -> None:
    """?done= names a fixed message; without the cookie the change's own redirect sets,
    a link someone sent made the hub announce a change that never happened (a hostile
    review: 'Success: the account is disabled' on an active account)."""
    with world.signed_in(OTHER_STEWARD) as tomas:
        request_id = ask(tomas, ITEM, ["street"], "tax-assessment")
        assert success_notice(tomas.get(f"/requests/{request_id}?done=request-sent").text)
    with world.signed_in(STEWARD) as owner:
        page = owner.get(f"/requests/{request_id}?done=approved")
        assert page.status_code == 200
        assert success_notice(page.text) is None  # before: "The request is approved ..."
        assert "Waiting for a decision" in page.text


def test_a_return_address_with_done_shows_no_success_after_signing_in_or_a_language_switch(
    world: ConsoleWorld,
) -> None:
    """The return address (``next``) of the sign-in form and of the language switch is
    the visitor's, so a ``?done=`` in it must not set the notice's cookie (a hostile
    review of b3395dd: a link to ``/sign-in?next=/requests/7%3Fdone%3Dapproved`` made
    the hub say "The request is approved" after the victim signed in)."""
    with world.signed_in(OTHER_STEWARD) as tomas:
        request_id = ask(tomas, ITEM, ["street"], "tax-audit")
    spoofed = f"/requests/{request_id}?done=approved"
    with world.browser() as owner:
        signed = sign_in(owner, STEWARD, TEST_PASSWORD, code=world.next_code(), next_path=spoofed)
        assert signed.status_code == 303
        assert signed.headers["location"] == spoofed  # still a local path: it is followed
        page = owner.get(spoofed)
        assert success_notice(page.text) is None  # before: "The request is approved ..."
        switched = owner.get("/language/en", params={"next": spoofed})
        assert switched.status_code == 303
        assert success_notice(owner.get(switched.headers["location"]).text) is None
        assert "Waiting for a decision" in page.text


@pytest.mark.parametrize(
    ("action", "audited"),
    [
        ("/requests/not-a-request/approve", "access.approve"),
        ("/requests/not-a-request/refuse", "access.refuse"),
        ("/grants/not-a-grant/revoke", "grant.revoke"),
    ],
)
def test_a_decision_on_no_request_with_a_reason_too_long_is_refused_not_a_500(
    world: ConsoleWorld, action: str, audited: str
) -> None:
    """A form whose reason breaks the rule (here: 2,001 characters) for an id that is
    no request's or grant's: the service refuses the id (404, audited), as it does with
    a good reason; before, the body it was given could not be made (a 500)."""
    with world.signed_in(STEWARD) as owner:
        token = csrf_token(owner.get("/catalogue").text)
        form = {"csrf_token": token, "reason": "x" * 2001, "confirm": "yes"}
        with added_audit_entries(world.hub, action=audited) as entries:
            answer = owner.post(action, data=form)
        assert answer.status_code == 404, answer.text[:300]
        assert [entry["outcome"] for entry in entries] == ["refused"]
