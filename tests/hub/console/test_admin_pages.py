"""The administrators' pages over plain HTTP (httpx, as a browser without JavaScript):
each change through its form, its audit entry (the API's action, the person), the
refusals of the services shown on the page, and every other role refused (403, audited).
On SQLite and PostgreSQL; the browser itself is in test_admin_browser.py."""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa

from onceonly.hub.db import make_sync_engine

from tests.hub.console.console_world import (
    ADMINISTRATOR,
    AUDITOR,
    STEWARD,
    ConsoleWorld,
    console_world,
    csrf_token,
    post_served_form,
)
from tests.hub_testing import (
    DATABASES,
    TEST_PASSWORD,
    added_audit_entries,
    module_database,
)

PAGES = [
    "/admin/departments",
    "/admin/departments/civil-registry",
    "/admin/departments/civil-registry/edit",
    "/admin/new-department",
    "/admin/clients",
    "/admin/people",
    "/admin/people/cecilia",
    "/admin/people/cecilia/edit",
    "/admin/people/cecilia/disable",
    "/admin/new-person",
    "/admin/dead-letters",
    "/admin/signing-keys",
]


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleWorld]:
    with console_world(
        database_url=module_database(request, tmp_path_factory),
        data_dir=tmp_path_factory.mktemp("hub"),
    ) as built:
        yield built


def _template(path: str) -> str:
    """The route of a page, as the audit log names it."""
    return path.replace("civil-registry", "{department_id}").replace("cecilia", "{username}")


def _post(browser: httpx.Client, page: str, action: str, **fields: str) -> httpx.Response:
    """Fill in the form of ``page`` and send it to ``action``, as a browser does (the
    form as served: post_served_form)."""
    shown = browser.get(page).text
    return post_served_form(browser, shown, action, {"csrf_token": csrf_token(shown), **fields})


def _post_unoffered(browser: httpx.Client, page: str, action: str) -> httpx.Response:
    """Send to ``action`` with ``page``'s CSRF token although ``page`` offers no such
    form (one's own account, a client that does not exist, a replay sent twice)."""
    return browser.post(action, data={"csrf_token": csrf_token(browser.get(page).text)})


def _client(world: ConsoleWorld, client_id: str, department: str = "tax") -> None:
    jwk = {"kty": "EC", "crv": "P-256", "kid": "k1",
           "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
           "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}  # fmt: skip
    with world.hub.admin() as admin:
        admin.call(
            "PUT",
            f"/v1/admin/clients/{client_id}",
            {"department": department, "jwks": {"keys": [jwk]}},
        )


def test_every_administrators_page_answers_an_administrator(world: ConsoleWorld) -> None:
    with world.signed_in(ADMINISTRATOR) as browser:
        for path in PAGES:
            answer = browser.get(path)
            assert answer.status_code == 200, (path, answer.text)
            assert 'href="/admin/people"' in answer.text  # the administrators' navigation
        catalogue = browser.get("/catalogue").text
        assert 'href="/admin/dead-letters"' in catalogue


@pytest.mark.parametrize("username", [STEWARD, AUDITOR])
def test_other_roles_are_refused_every_page_and_action_and_each_refusal_is_audited(
    world: ConsoleWorld, username: str
) -> None:
    with (
        world.signed_in(username) as browser,
        added_audit_entries(world.hub, action="route.refused") as reads,
        added_audit_entries(world.hub, action="registry.client.disable") as disables,
        added_audit_entries(world.hub, action="person.put") as puts,
    ):
        assert 'href="/admin/people"' not in browser.get("/catalogue").text
        for path in PAGES:
            answer = browser.get(path)
            assert answer.status_code == 403, path
            assert "You cannot use this page" in answer.text
        token = csrf_token(browser.get("/account").text)  # a form of their own session
        forged = browser.post("/admin/people/ada/disable", data={"csrf_token": token})
        assert forged.status_code == 403
        forged = browser.post("/admin/clients/anyone/disable", data={"csrf_token": token})
        assert forged.status_code == 403
    assert {(e["target"], e["reason"], e["person"]) for e in reads} == {
        (f"GET {_template(path)}", "forbidden", username) for path in PAGES
    }
    assert [(e["outcome"], e["reason"], e["person"]) for e in puts] == [
        ("refused", "forbidden", username)
    ]
    assert [(e["outcome"], e["reason"]) for e in disables] == [("refused", "forbidden")]
    with world.hub.admin() as admin:
        assert admin.call("GET", "/v1/admin/people/ada")["status"] == "active"


def test_a_signed_out_visitor_is_sent_to_sign_in(world: ConsoleWorld) -> None:
    with world.browser() as browser:
        for path in PAGES:
            answer = browser.get(path)
            assert answer.status_code == 303
            assert answer.headers["location"].startswith("/sign-in?next=")


def test_an_administrator_adds_and_changes_a_department_audited_as_the_api(
    world: ConsoleWorld,
) -> None:
    with (
        world.signed_in(ADMINISTRATOR) as browser,
        added_audit_entries(world.hub, action="registry.department.put") as added,
    ):
        empty = _post(browser, "/admin/new-department", "/admin/new-department", id="X", name="")
        assert empty.status_code == 400
        assert 'class="govuk-error-summary"' in empty.text
        assert 'href="#id"' in empty.text
        assert 'href="#name"' in empty.text
        made = _post(
            browser,
            "/admin/new-department",
            "/admin/new-department",
            id="land-board",
            name="Land Board",
            description="Keeps the land register",
            adapter_url="http://127.0.0.1:9/adapter",  # development: http is allowed
        )
        assert (made.status_code, made.headers["location"]) == (
            303,
            "/admin/departments/land-board?done=department-saved",
        )
        page = browser.get(made.headers["location"]).text
        assert "The department is saved." in page
        assert "Keeps the land register" in page
        again = _post(
            browser, "/admin/new-department", "/admin/new-department", id="land-board", name="L"
        )
        assert again.status_code == 400
        assert "A department with this id exists" in again.text
        changed = _post(
            browser,
            "/admin/departments/land-board/edit",
            "/admin/departments/land-board/edit",
            name="Land and Spatial Board",
            description="",
            adapter_url="",
        )
        assert changed.status_code == 303
    with world.hub.admin() as admin:
        department = admin.call("GET", "/v1/admin/departments/land-board")
    assert department == {
        "id": "land-board",
        "name": "Land and Spatial Board",
        "description": "",
        "adapter_url": None,
    }
    assert [(e["outcome"], e.get("reason"), e["person"], e.get("department")) for e in added] == [
        ("refused", "invalid-request", ADMINISTRATOR, "X"),
        ("ok", None, ADMINISTRATOR, "land-board"),
        ("refused", "invalid-request", ADMINISTRATOR, "land-board"),
        ("ok", None, ADMINISTRATOR, "land-board"),
    ]


def test_a_name_with_an_invisible_character_is_a_field_error_in_words(world: ConsoleWorld) -> None:
    """Decision 0072: the API refuses a bidirectional control or a zero-width character
    in a name people read; the forms name the field and what to remove."""
    hidden = "Remove the invisible characters, such as direction marks and zero-width spaces"
    with world.signed_in(ADMINISTRATOR) as browser:
        department = _post(
            browser,
            "/admin/new-department",
            "/admin/new-department",
            id="mirror-board",
            name="Tax\u202eBoard",
            description="Keeps\u200b nothing",
        )
        person = _post(
            browser,
            "/admin/new-person",
            "/admin/new-person",
            username="mirror",
            display_name="Maret\u200bMets",
            password=TEST_PASSWORD,
            role="auditor",
        )
    assert department.status_code == 400
    assert f'<a href="#name">{hidden}</a>' in department.text
    assert f'<a href="#description">{hidden}</a>' in department.text
    assert person.status_code == 400
    assert f'<a href="#display_name">{hidden}</a>' in person.text


def test_a_departments_page_shows_its_items_and_clients(world: ConsoleWorld) -> None:
    _client(world, "tax-office-page")
    with world.signed_in(ADMINISTRATOR) as browser:
        page = browser.get("/admin/departments/tax").text
        assert "tax-office-page" in page
        registry = browser.get("/admin/departments/civil-registry").text
        assert "/catalogue/person.residential-address" in registry
        assert browser.get("/admin/departments/no-such-one").status_code == 404


def test_an_administrator_disables_a_client_after_confirming_and_enables_it_later(
    world: ConsoleWorld,
) -> None:
    _client(world, "tax-batch")
    with (
        world.signed_in(ADMINISTRATOR) as browser,
        added_audit_entries(world.hub, action="registry.client.disable") as disabled,
        added_audit_entries(world.hub, action="registry.client.enable") as enabled,
    ):
        listing = browser.get("/admin/clients").text
        assert "tax-batch" in listing
        assert "k1" in listing
        page = browser.get("/admin/clients/tax-batch").text
        assert 'href="/admin/clients/tax-batch/disable"' in page  # a link to a confirmation
        assert 'action="/admin/clients/tax-batch/disable"' not in page
        done = _post(
            browser, "/admin/clients/tax-batch/disable", "/admin/clients/tax-batch/disable"
        )
        assert done.headers["location"] == "/admin/clients/tax-batch?done=client-disabled"
        assert "Disabled" in browser.get(done.headers["location"]).text
        # Tokens it held may still be alive: the service's refusal, on the page.
        early = _post(browser, "/admin/clients/tax-batch", "/admin/clients/tax-batch/enable")
        assert early.status_code == 409
        assert "earlier access tokens may still be alive" in early.text
        world.clock.advance(world.hub.settings.access_token_lifetime + 60)
        later = _post(browser, "/admin/clients/tax-batch", "/admin/clients/tax-batch/enable")
        assert later.headers["location"] == "/admin/clients/tax-batch?done=client-enabled"
        missing = _post_unoffered(
            browser, "/admin/clients", "/admin/clients/no-such-client/disable"
        )
        assert missing.status_code == 404
    with world.hub.admin() as admin:
        assert admin.call("GET", "/v1/admin/clients/tax-batch")["status"] == "active"
    assert [(e["outcome"], e.get("reason"), e["person"], e["target"]) for e in disabled] == [
        ("ok", None, ADMINISTRATOR, "tax-batch"),
        ("refused", "client-not-found", ADMINISTRATOR, "no-such-client"),
    ]
    assert [(e["outcome"], e.get("reason"), e["department"]) for e in enabled] == [
        ("refused", "client-tokens-outstanding", "tax"),
        ("ok", None, "tax"),
    ]


def test_an_administrator_creates_a_person_sets_roles_and_disables_them(
    world: ConsoleWorld,
) -> None:
    with (
        world.signed_in(ADMINISTRATOR) as browser,
        added_audit_entries(world.hub, action="person.put") as added,
    ):
        weak = _post(
            browser,
            "/admin/new-person",
            "/admin/new-person",
            username="maret",
            display_name="Maret Mets",
            password="maret12345678",
            role="steward",
        )
        assert weak.status_code == 400
        assert 'href="#password"' in weak.text
        assert ">Enter a password that does not contain the username</a>" in weak.text  # that rule
        assert 'href="#departments"' in weak.text
        assert "maret12345678" not in weak.text  # a password is never shown again
        made = _post(
            browser,
            "/admin/new-person",
            "/admin/new-person",
            username="maret",
            display_name="Maret Mets",
            password=TEST_PASSWORD,
            role="steward",
            **{"department.tax": "yes", "department.civil-registry": "yes"},
        )
        assert made.headers["location"] == "/admin/people/maret?done=person-saved"
        page = browser.get("/admin/people/maret").text
        assert "Steward</span>" in page or "Steward: civil-registry" in page
        assert "Steward: tax" in page
        assert TEST_PASSWORD not in page
        mixed = _post(
            browser, "/admin/people/maret/edit", "/admin/people/maret/edit", role="auditor"
        )
        assert mixed.status_code == 303
        assert "Auditor" in browser.get("/admin/people/maret").text
        with world.browser() as maret:  # she signs in; disabling her ends it
            token = csrf_token(maret.get("/sign-in").text)
            form = {"csrf_token": token, "username": "maret", "password": TEST_PASSWORD}
            assert (
                maret.post("/sign-in", data={**form, "code": "", "next": "/account"}).status_code
                == 303
            )
            assert maret.get("/account").status_code == 200
            confirm = browser.get("/admin/people/maret/disable").text
            assert "Yes, disable the account" in confirm
            done = _post(browser, "/admin/people/maret/disable", "/admin/people/maret/disable")
            assert done.headers["location"] == "/admin/people/maret?done=person-disabled"
            assert maret.get("/account").headers["location"].startswith("/sign-in")
        own = _post_unoffered(browser, "/admin/people", "/admin/people/ada/disable")
        assert own.status_code == 403
        assert "do not change their own account" in own.text
        assert "Change roles or password" not in browser.get("/admin/people/ada").text
        enabled = _post(browser, "/admin/people/maret", "/admin/people/maret/enable")
        assert enabled.headers["location"] == "/admin/people/maret?done=person-enabled"
    with world.hub.admin() as admin:
        maret = admin.call("GET", "/v1/admin/people/maret")
    assert maret["status"] == "active"
    assert maret["roles"] == [{"role": "auditor", "department": None}]
    outcomes = [(e["outcome"], e.get("reason"), e["person"], e["target"]) for e in added]
    assert outcomes == [
        ("refused", "invalid-request", ADMINISTRATOR, "maret"),
        ("ok", None, ADMINISTRATOR, "maret"),
        ("ok", None, ADMINISTRATOR, "maret"),
        ("ok", None, ADMINISTRATOR, "maret"),
        ("refused", "forbidden", ADMINISTRATOR, ADMINISTRATOR),
        ("ok", None, ADMINISTRATOR, "maret"),
    ]


def test_no_page_shows_a_password_hash_or_a_one_time_code_secret(world: ConsoleWorld) -> None:
    with world.signed_in(ADMINISTRATOR) as browser:
        shown = browser.get("/admin/people").text + browser.get("/admin/people/cecilia").text
        shown += browser.get("/admin/people/cecilia/edit").text
    assert world.totp_secret not in shown
    assert "argon2" not in shown
    assert "One-time codes" in shown  # the methods are shown, never the secrets


def _dead_letter(world: ConsoleWorld) -> str:
    """A delivery that ran out of retries, as the deliverer leaves one."""
    engine = make_sync_engine(world.hub.settings.resolved_database_url)
    event_id, delivery_id = uuid.uuid4().hex, uuid.uuid4().hex
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO events (id, item_id, owner_id, kind, subject_pseudonym,"
                    " published_at) VALUES (:id, 'person.residential-address',"
                    " 'civil-registry', 'changed', 'p', :now)"
                ),
                {"id": event_id, "now": now},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO event_deliveries (id, event_id, department_id, status, attempts,"
                    " next_attempt_at, last_error) VALUES (:id, :event, 'tax', 'dead', 10, :now,"
                    " 'ConnectError')"
                ),
                {"id": delivery_id, "event": event_id, "now": now},
            )
    finally:
        engine.dispose()
    return delivery_id


def test_an_administrator_replays_a_dead_letter_audited_as_the_api(world: ConsoleWorld) -> None:
    delivery = _dead_letter(world)
    with (
        world.signed_in(ADMINISTRATOR) as browser,
        added_audit_entries(world.hub, action="event.replay") as added,
    ):
        listing = browser.get("/admin/dead-letters").text
        assert f'action="/admin/dead-letters/{delivery}/replay"' in listing
        assert "ConnectError" in listing
        done = _post(browser, "/admin/dead-letters", f"/admin/dead-letters/{delivery}/replay")
        assert done.headers["location"] == "/admin/dead-letters?done=replayed"
        assert delivery not in browser.get(done.headers["location"]).text
        again = _post_unoffered(
            browser, "/admin/dead-letters", f"/admin/dead-letters/{delivery}/replay"
        )
        assert again.status_code == 404
    assert [(e["outcome"], e.get("reason"), e["person"]) for e in added] == [
        ("ok", None, ADMINISTRATOR),
        ("refused", "delivery-not-found", ADMINISTRATOR),
    ]
    assert added[0]["target"] == "tax"


def test_the_signing_keys_page_shows_the_key_that_signs(world: ConsoleWorld) -> None:
    with world.signed_in(ADMINISTRATOR) as browser:
        page = browser.get("/admin/signing-keys").text
    assert world.hub.keys.kid in page
    assert "Signs now" in page
    assert "<form" not in page.split('id="main-content"')[1]  # read only


def test_an_administrators_pages_are_in_chinese_too(world: ConsoleWorld) -> None:
    with world.signed_in(ADMINISTRATOR) as browser:
        browser.cookies.set("onceonly-language", "zh-Hans")
        for path in PAGES:
            answer = browser.get(path)
            assert answer.status_code == 200
            assert 'lang="zh-Hans"' in answer.text
        assert "添加部门" in browser.get("/admin/departments").text
        assert "签名密钥" in browser.get("/admin/signing-keys").text
