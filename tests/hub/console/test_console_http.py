"""The console over plain HTTP (httpx, as a browser without JavaScript would): sign-in
and its cookies, CSRF refusals, session expiry and sign-out, security headers, roles,
languages, the catalogue and an item's page. On SQLite and PostgreSQL; the browser
itself is in test_console_browser.py."""

import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa
import trustme

from onceonly.hub.app import create_app
from onceonly.hub.audit.checkpoints import load_signer
from onceonly.hub.cli.servers import ServerTLS, loopback_socket, serve_in_thread
from onceonly.hub.config import Settings
from onceonly.hub.console.cookies import ENDED_NOTICE_SECONDS
from onceonly.hub.console.pages import CONTENT_SECURITY_POLICY
from onceonly.hub.keys import HubKeys
from onceonly.hub.people.exceptions import SignInsBusy
from onceonly.hub.people.service import password_checks

from tests.hub.console.console_world import (
    ADMINISTRATOR,
    AUDITOR,
    OTHER_STEWARD,
    STEWARD,
    ConsoleWorld,
    console_world,
    csrf_token,
    post_served_form,
    sign_in,
)
from tests.hub_testing import (
    DATABASES,
    TEST_PASSWORD,
    added_audit_entries,
    database_name,
    module_database,
    postgres_admin,
)

ITEM = "person.residential-address"
PAGES = ["/", "/catalogue", f"/catalogue/{ITEM}", "/account"]


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleWorld]:
    with console_world(
        database_url=module_database(request, tmp_path_factory),
        data_dir=tmp_path_factory.mktemp("hub"),
    ) as built:
        yield built


def _cookie_headers(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie lines by cookie name."""
    return {line.split("=", 1)[0]: line for line in response.headers.get_list("set-cookie")}


def test_a_visitor_who_is_not_signed_in_reaches_only_the_sign_in_page(
    world: ConsoleWorld,
) -> None:
    with world.browser() as browser:
        for path in PAGES:
            answer = browser.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/sign-in"), path
        assert browser.get("/catalogue?q=tax").headers["location"] == (
            "/sign-in?next=%2Fcatalogue%3Fq%3Dtax"
        )
        assert browser.get("/sign-in").status_code == 200


def test_signing_in_sets_a_strict_http_only_session_cookie_for_the_session_lifetime(
    world: ConsoleWorld,
) -> None:
    with world.browser() as browser:
        form = browser.get("/sign-in")
        pre = _cookie_headers(form)["onceonly-console-pre"]
        assert "HttpOnly" in pre
        assert "SameSite=strict" in pre
        assert "Secure" not in pre
        answer = sign_in(browser, AUDITOR, TEST_PASSWORD, next_path="/account")
        assert (answer.status_code, answer.headers["location"]) == (303, "/account")
        session = _cookie_headers(answer)["onceonly-console"]
        assert "HttpOnly" in session
        assert "SameSite=strict" in session
        assert "Path=/" in session
        # the browser keeps it past the session's end, so the hub can say it ended
        assert f"Max-Age={world.hub.settings.session_lifetime + ENDED_NOTICE_SECONDS}" in session
        assert "Secure" not in session  # development over http; production: below
        assert browser.get("/account").status_code == 200


def test_a_steward_with_one_time_codes_needs_the_code_and_a_refusal_is_audited(
    world: ConsoleWorld,
) -> None:
    with (
        world.browser() as browser,
        added_audit_entries(world.hub, action="person.sign-in") as added,
    ):
        without = sign_in(browser, STEWARD, TEST_PASSWORD)
        assert without.status_code == 401
        assert "The username, password or one-time code is not right" in without.text
        assert 'class="govuk-error-summary"' in without.text
        wrong = sign_in(browser, STEWARD, "not the password at all", code=world.next_code())
        assert wrong.status_code == 401
        right = sign_in(browser, STEWARD, TEST_PASSWORD, code=world.next_code())
        assert right.status_code == 303
    outcomes = [(entry["outcome"], entry.get("reason"), entry["person"]) for entry in added]
    assert outcomes == [
        ("refused", "sign-in-failed", STEWARD),
        ("refused", "sign-in-failed", STEWARD),
        ("ok", "totp", STEWARD),
    ]


def test_a_sign_in_refused_because_the_hub_is_busy_says_so_not_that_it_failed(
    world: ConsoleWorld,
) -> None:
    """Too many sign-ins being checked at once (decision 0063) is the hub's load, not
    this person's failures: the page says to try again in a moment, where it said "Too
    many failed sign-ins: wait a few minutes" (a hostile review)."""
    checks = password_checks(world.hub.settings)
    held = []
    try:
        while True:  # take every place of this process's bound
            held.append(checks.admit())
    except SignInsBusy:
        pass
    try:
        with world.browser() as browser:
            answer = sign_in(browser, STEWARD, TEST_PASSWORD, code=world.next_code())
    finally:
        for check in held:
            check.__exit__(None, None, None)
    assert answer.status_code == 429
    assert "The hub is busy checking other sign-ins: try again in a moment" in answer.text
    assert "Too many failed sign-ins" not in answer.text


def test_an_empty_sign_in_form_is_answered_with_an_error_summary(world: ConsoleWorld) -> None:
    with world.browser() as browser:
        answer = sign_in(browser, "", "", code="12ab")
        assert answer.status_code == 400
        for field in ("username", "password", "code"):
            assert f'href="#{field}"' in answer.text
            assert f'id="{field}-error"' in answer.text
        assert "<title>Error: Sign in" in answer.text


def test_a_post_without_its_csrf_token_is_refused_and_changes_nothing(
    world: ConsoleWorld,
) -> None:
    with world.signed_in(AUDITOR) as browser, world.signed_in(ADMINISTRATOR) as other:
        for form in ({"other": "1"}, {"csrf_token": ""}, {"csrf_token": "forged"}):
            assert browser.post("/sign-out", data=form).status_code == 403
        # a token is bound to its own sign-in: another person's does not hold here
        theirs = csrf_token(other.get("/catalogue").text)
        refused = browser.post("/sign-out", data={"csrf_token": theirs})
        assert refused.status_code == 403
        assert "The form could not be accepted" in refused.text
        assert browser.get("/account").status_code == 200  # still signed in
        not_a_form = browser.post(
            "/sign-out",
            content=b'{"csrf_token": "x"}',
            headers={"content-type": "application/json"},
        )
        assert not_a_form.status_code == 400
    with httpx.Client(base_url=world.url) as stranger:  # no pre-session cookie at all
        body = {"csrf_token": "x", "username": AUDITOR, "password": TEST_PASSWORD}
        assert stranger.post("/sign-in", data=body).status_code == 403


def test_a_refused_form_is_audited(world: ConsoleWorld) -> None:
    with (
        world.signed_in(AUDITOR) as browser,
        added_audit_entries(world.hub, action="console.form-refused") as added,
    ):
        assert browser.post("/sign-out", data={"csrf_token": "forged"}).status_code == 403
    assert [(e["outcome"], e["reason"], e["target"]) for e in added] == [
        ("refused", "forbidden", "/sign-out")
    ]


def test_signing_in_again_ends_the_sign_in_before(world: ConsoleWorld) -> None:
    with world.signed_in(AUDITOR) as browser:
        before = browser.cookies["onceonly-console"]
        token = csrf_token(browser.get("/account").text)  # a form of the signed-in page
        form = {"csrf_token": token, "username": ADMINISTRATOR, "password": TEST_PASSWORD}
        assert browser.post("/sign-in", data={**form, "code": ""}).status_code == 303
        assert browser.cookies["onceonly-console"] != before
    with httpx.Client(base_url=world.url, cookies={"onceonly-console": before}) as copy:
        assert copy.get("/account").status_code == 303  # the old sign-in is over


def test_signing_in_again_whose_sign_out_fails_audits_the_failed_sign_out(
    world: ConsoleWorld,
) -> None:
    """The sign-out of the sign-in before is audited under a scope of its own, not the
    request's: when its commit failed, the error handler audited nothing for it (a
    hostile review, helper-138)."""
    revoking: dict[str, bool] = {}

    def saw_revoke(conn: object, cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("UPDATE person_sessions SET revoked_at"):
            revoking["now"] = True

    def fail_its_commit(session: object) -> None:
        if revoking.pop("now", False):
            raise RuntimeError("the disk is full")  # as a failing commit raises

    listeners = [
        (sa.engine.Engine, "before_cursor_execute", saw_revoke),
        (sa.orm.Session, "before_commit", fail_its_commit),
    ]
    with world.signed_in(AUDITOR) as browser:
        token = csrf_token(browser.get("/account").text)
        form = {"csrf_token": token, "username": ADMINISTRATOR, "password": TEST_PASSWORD}
        for target, name, listener in listeners:
            sa.event.listen(target, name, listener)
        try:
            with added_audit_entries(world.hub, action="person.sign-out") as outs:
                answer = browser.post("/sign-in", data={**form, "code": ""})
        finally:
            for target, name, listener in listeners:
                sa.event.remove(target, name, listener)
    assert answer.status_code == 500
    assert [(entry["outcome"], entry.get("person")) for entry in outs] == [
        ("failed", AUDITOR)  # before: none
    ]


def test_a_form_posted_without_a_sign_in_goes_to_sign_in_then_back_to_its_page(
    world: ConsoleWorld,
) -> None:
    """A form's address takes POSTs only: sign-in brings the person back to the page the
    form was on, the nearest address at or above the form's that answers GET."""
    with world.browser() as browser:
        token = csrf_token(browser.get("/sign-in").text)
        expected = {
            f"/catalogue/{ITEM}/request": f"/catalogue/{ITEM}/request",
            f"/requests/{'0' * 32}/approve": f"/requests/{'0' * 32}",
            f"/grants/{'0' * 32}/revoke": f"/grants/{'0' * 32}",
            f"/catalogue/{ITEM}/retire": f"/catalogue/{ITEM}",
            f"/admin/dead-letters/{'0' * 32}/replay": "/admin/dead-letters",
            "/audit/export": "/audit",
        }
        for posted, page in expected.items():
            answer = browser.post(posted, data={"csrf_token": token})
            query = urlencode({"next": page, "unsent": "1"})
            assert (answer.status_code, answer.headers["location"]) == (303, f"/sign-in?{query}")
        answer = browser.post("/sign-out", data={"csrf_token": token})
        assert answer.headers["location"] == "/sign-in?unsent=1"  # the catalogue, after
        page = browser.get("/account")
        assert page.headers["location"] == "/sign-in?next=%2Faccount"


def test_a_form_sent_after_the_sign_in_ended_says_so_and_signing_in_goes_back_to_it(
    world: ConsoleWorld,
) -> None:
    with world.signed_in(OTHER_STEWARD) as browser:
        form_page = f"/catalogue/{ITEM}/request"
        token = csrf_token(browser.get(form_page).text)
        world.clock.advance(world.hub.settings.session_lifetime + 1)
        answer = browser.post(form_page, data={"csrf_token": token, "purpose_text": "x"})
        assert answer.status_code == 303
        page = browser.get(answer.headers["location"])
        assert "Your sign-in has ended" in page.text
        assert 'id="unsent-form"' in page.text
        form = {"csrf_token": csrf_token(page.text), "username": OTHER_STEWARD}
        form |= {"password": TEST_PASSWORD, "code": "", "next": form_page}
        signed = post_served_form(browser, page.text, "/sign-in", form)
        assert (signed.status_code, signed.headers["location"]) == (303, form_page)
        # A visit that never signed in is not told that a sign-in ended.
        with world.browser() as stranger:
            assert "Your sign-in has ended" not in stranger.get(answer.headers["location"]).text


def test_the_page_to_go_back_to_after_signing_in_is_never_another_site(
    world: ConsoleWorld,
) -> None:
    for elsewhere in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        with world.browser() as browser:
            page = browser.get("/sign-in", params={"next": elsewhere}).text
            form = {"csrf_token": csrf_token(page), "username": AUDITOR}
            form |= {"password": TEST_PASSWORD, "code": "", "next": elsewhere}
            answer = post_served_form(browser, page, "/sign-in", form)
            assert answer.headers["location"] == "/catalogue", elsewhere


def test_pages_answer_head_as_they_answer_get(world: ConsoleWorld) -> None:
    with world.signed_in(ADMINISTRATOR) as browser:
        for path in ("/catalogue", "/account", "/sign-in"):
            got, head = browser.get(path), browser.head(path)
            assert head.status_code == got.status_code, path
            assert head.content == b""
            assert head.headers["content-security-policy"] == got.headers["content-security-policy"]


def test_sign_out_ends_the_session_at_the_hub(world: ConsoleWorld) -> None:
    with (
        world.signed_in(AUDITOR) as browser,
        added_audit_entries(world.hub, action="person.sign-out") as added,
    ):
        stolen = browser.cookies["onceonly-console"]
        token = csrf_token(browser.get("/account").text)
        answer = browser.post("/sign-out", data={"csrf_token": token})
        assert (answer.status_code, answer.headers["location"]) == (303, "/sign-in?signed_out=1")
        assert "Max-Age=0" in _cookie_headers(answer)["onceonly-console"]
        assert "You have signed out." in browser.get(answer.headers["location"]).text
    assert [(entry["outcome"], entry["person"]) for entry in added] == [("ok", AUDITOR)]
    with httpx.Client(base_url=world.url, cookies={"onceonly-console": stolen}) as replay:
        assert replay.get("/catalogue").status_code == 303


def test_a_session_ends_after_its_lifetime(world: ConsoleWorld) -> None:
    with world.signed_in(ADMINISTRATOR) as browser:
        world.clock.advance(world.hub.settings.session_lifetime - 60)
        assert browser.get("/catalogue").status_code == 200
        world.clock.advance(61)
        answer = browser.get("/catalogue")
        assert (answer.status_code, answer.headers["location"]) == (303, "/sign-in")
        page = browser.get("/sign-in")
        assert "Your sign-in has ended" in page.text


def test_every_console_answer_carries_the_security_headers_and_no_inline_code(
    world: ConsoleWorld,
) -> None:
    with world.signed_in(AUDITOR) as browser:
        answers = [browser.get(path) for path in [*PAGES, "/catalogue/no.such-item"]]
        answers += [browser.get(f"/assets/{name}") for name in ("console.css", "console.js")]
        answers.append(httpx.get(f"{world.url}/sign-in"))
        for answer in answers:
            headers = answer.headers
            assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
            assert "form-action 'self'" in CONTENT_SECURITY_POLICY
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] == "no-referrer"
            assert "strict-transport-security" not in headers  # development, http
            if headers.get("content-type", "").startswith("text/html"):
                assert headers["cache-control"] == "no-store"
                assert not re.search(r"<script(?![^>]*\bsrc=)", answer.text), answer.url
                assert "<style" not in answer.text
                assert " style=" not in answer.text


def test_console_routes_are_not_in_the_openapi_document() -> None:
    paths = create_app().openapi()["paths"]
    assert not [
        path
        for path in paths
        if not path.startswith(("/v1", "/oauth", "/.well-known"))
        and path not in ("/healthz", "/readyz", "/metrics")
    ]


def test_the_catalogue_searches_by_text_and_filters_by_owner_and_tag(world: ConsoleWorld) -> None:
    with world.signed_in(AUDITOR) as browser:
        everything = browser.get("/catalogue").text
        assert "person.residential-address" in everything
        assert "vehicle" in everything
        found = browser.get("/catalogue", params={"q": "residential"}).text
        assert 'href="/catalogue/person.residential-address"' in found
        assert 'href="/catalogue/business.registration"' not in found
        owned = browser.get("/catalogue", params={"owner": "tax"}).text
        links = re.findall(r'href="/catalogue/([a-z.-]+)"', owned)
        assert links
        assert all(
            browser.get(f"/catalogue/{item}").text.count(
                '<dd class="govuk-summary-list__value">tax</dd>'
            )
            == 1
            for item in links
        )
        tagged = browser.get("/catalogue", params={"tag": "address"}).text
        assert 'href="/catalogue/person.residential-address"' in tagged
        assert '<option value="tax" selected>' in owned
        nothing = browser.get("/catalogue", params={"q": "no item has these words"}).text
        assert "0 data items" in nothing
        wrong = browser.get("/catalogue", params={"owner": "../../etc"})
        assert wrong.status_code == 400
        assert 'href="#owner"' in wrong.text


def test_an_items_page_shows_its_fields_with_personal_ones_marked_and_its_versions(
    world: ConsoleWorld,
) -> None:
    with world.signed_in(AUDITOR) as browser:
        page = browser.get("/catalogue/person.residential-address").text
        rows = re.findall(r'<tr class="govuk-table__row">(.*?)</tr>', page, re.S)
        fields = {
            re.search(r'<span class="app-code">([a-z_]+)</span>', row).group(1): row  # type: ignore[union-attr]
            for row in rows
            if 'scope="row"' in row and "app-code" in row
        }
        assert "Personal</strong>" in fields["street"]
        assert "Personal</strong>" not in fields["country"]
        assert 'id="compatibility"><span class="app-code">BACKWARD' in page
        assert "First version" in page
        assert ">Active</strong>" in page
        assert browser.get("/catalogue/no.such-item").status_code == 404
        assert browser.get("/catalogue/NOT AN ID").status_code == 404


def test_what_a_page_shows_follows_the_persons_roles(world: ConsoleWorld) -> None:
    item = "/catalogue/person.residential-address"  # owned by civil-registry
    with world.signed_in(STEWARD) as owner:
        assert 'id="owned"' in owner.get(item).text
        account = owner.get("/account").text
        assert "Steward: civil-registry" in account
    for person in (OTHER_STEWARD, AUDITOR, ADMINISTRATOR):
        with world.signed_in(person) as browser:
            assert 'id="owned"' not in browser.get(item).text, person
    with world.signed_in(ADMINISTRATOR) as browser:
        assert "<li>Administrator</li>" in browser.get("/account").text


def test_the_language_follows_accept_language_and_the_switch(world: ConsoleWorld) -> None:
    with world.browser() as browser:
        chinese = browser.get("/sign-in", headers={"accept-language": "zh-CN,zh;q=0.9,en;q=0.5"})
        assert '<html lang="zh-Hans"' in chinese.text
        assert "登录" in chinese.text
        english = browser.get("/sign-in", headers={"accept-language": "zh-TW, en;q=0.8"})
        assert '<html lang="en"' in english.text
        switch = browser.get("/language/zh-Hans", params={"next": "/sign-in?next=%2Faccount"})
        assert (switch.status_code, switch.headers["location"]) == (303, "/sign-in?next=%2Faccount")
        assert "SameSite=lax" in _cookie_headers(switch)["onceonly-language"]
        assert '<html lang="zh-Hans"' in browser.get("/sign-in").text  # the cookie wins
        away = browser.get("/language/en", params={"next": "//evil.example/"})
        assert away.headers["location"] == "/catalogue"  # never another site
        assert '<html lang="en"' in browser.get("/sign-in").text


# --- production: Secure, __Host- and HSTS, over TLS ---------------------------------------


@pytest.mark.postgres
def test_in_production_the_cookies_are_secure_host_cookies_and_hsts_is_sent(
    postgres_template: str, tmp_path: Path
) -> None:
    url = f"{postgres_template}_prod"
    with postgres_admin(postgres_template) as admin:
        admin.execute(
            sa.text(
                f'CREATE DATABASE "{database_name(url)}"'
                f' TEMPLATE "{database_name(postgres_template)}"'
            )
        )
    ca = trustme.CA()
    pem = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    sock = loopback_socket()
    settings = Settings(
        mode="production",
        issuer=f"https://127.0.0.1:{sock.getsockname()[1]}",
        database_url=url,
        data_dir=tmp_path,
        audit_origin="hub.example/audit",
        log_json=False,
    )
    keys = HubKeys.load(settings.keys_dir, create=True)  # as `onceonly keys init` does
    load_signer(keys_dir=settings.keys_dir, origin=settings.resolved_audit_origin, create=True)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    app = create_app(settings, keys=keys)
    with serve_in_thread(app, sock, tls=ServerTLS(certfile=pem, keyfile=pem)) as base:
        admin = {"Authorization": f"Bearer {keys.admin_token}"}
        body = {"password": TEST_PASSWORD, "roles": [{"role": "auditor"}]}
        made = httpx.put(f"{base}/v1/admin/people/pia", json=body, headers=admin, verify=context)
        assert made.status_code == 200, made.text
        with httpx.Client(base_url=base, verify=context) as browser:
            form = browser.get("/sign-in")
            assert form.headers["strict-transport-security"].startswith("max-age=")
            pre = _cookie_headers(form)["__Host-onceonly-console-pre"]
            assert "Secure" in pre
            assert "Path=/" in pre
            assert "Domain" not in pre
            answer = sign_in(browser, "pia", TEST_PASSWORD)
            assert answer.status_code == 303, answer.text
            session = _cookie_headers(answer)["__Host-onceonly-console"]
            assert all(part in session for part in ("Secure", "HttpOnly", "SameSite=strict"))
            assert browser.get("/account").status_code == 200


HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def test_a_mistyped_address_or_a_wrong_method_is_a_page_for_a_browser(world: ConsoleWorld) -> None:
    with world.signed_in(AUDITOR) as browser:
        for path, method, status, heading in (
            (f"/catalogue/{ITEM}/x", "GET", 404, "Page not found"),
            ("/no-such-page", "GET", 404, "Page not found"),
            ("/sign-out", "GET", 405, "This page cannot be opened this way"),
            ("/catalogue", "POST", 405, "This page cannot be opened this way"),
        ):
            answer = browser.request(method, path, headers=HTML)
            assert answer.status_code == status, (path, answer.text)
            assert answer.headers["content-type"].startswith("text/html"), path
            assert f'<h1 class="govuk-heading-l">{heading}</h1>' in answer.text, path
            assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert answer.headers["cache-control"] == "no-store"
            assert "Sign out" in answer.text  # the console's frame, for the signed-in person
        chinese = browser.get("/no-such-page", headers={**HTML, "Accept-Language": "zh-CN"})
        assert '<h1 class="govuk-heading-l">找不到页面</h1>' in chinese.text


def test_api_clients_keep_problem_json_for_a_mistyped_address_or_a_wrong_method(
    world: ConsoleWorld,
) -> None:
    with world.signed_in(AUDITOR) as browser:
        for path, method, headers in (
            ("/v1/no-such-thing", "GET", HTML),  # the API's addresses, whatever is accepted
            ("/v1/audit/checkpoint", "POST", HTML),
            (f"/catalogue/{ITEM}/x", "GET", {"Accept": "application/json"}),
            ("/sign-out", "GET", {"Accept": "*/*"}),
        ):
            answer = browser.request(method, path, headers=headers)
            assert answer.status_code in (404, 405), path
            assert answer.headers["content-type"] == "application/problem+json", path
