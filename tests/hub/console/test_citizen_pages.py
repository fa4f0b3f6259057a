"""OpenID Connect in the console over plain HTTP (httpx, as a browser without
JavaScript): staff sign in with the provider and get a console session; a citizen signs
in with the citizens' provider and sees who used their data, and nothing else. Real
providers on loopback (tests/hub/oidc_provider.py), one for staff and one for
citizens; a real exchange world, on SQLite and PostgreSQL."""

import itertools
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import sqlalchemy as sa

from onceonly.adapters import AccessDenied
from onceonly.hub.citizen import service as citizens
from onceonly.hub.console import cookies
from onceonly.hub.db import make_sync_engine
from onceonly.hub.people import oidc

from tests.hub.console.console_world import console_page_paths
from tests.hub.exchange_world import ADDRESS, ADDRESS_RECORD, PURPOSE, World, module_exchange_world
from tests.hub.oidc_provider import CLIENT_ID, CLIENT_SECRET, Behaviour, Provider, running_provider
from tests.hub_testing import DATABASES, added_audit_entries, audit_entries

CLAIM = "national_id"
_PEOPLE = itertools.count(1)
_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


@pytest.fixture(scope="module")
def staff_provider() -> Iterator[Provider]:
    with running_provider() as running:
        yield running


@pytest.fixture(scope="module")
def citizen_provider() -> Iterator[Provider]:
    with running_provider() as running:
        yield running


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    staff_provider: Provider,
    citizen_provider: Provider,
) -> Iterator[World]:
    settings = {
        "oidc_issuer": staff_provider.url,
        "oidc_client_id": CLIENT_ID,
        "oidc_client_secret": CLIENT_SECRET,
        "citizen_oidc_issuer": citizen_provider.url,
        "citizen_oidc_client_id": CLIENT_ID,
        "citizen_oidc_client_secret": CLIENT_SECRET,
        "citizen_identifier_claim": CLAIM,
        "checkpoint_interval": 0.2,
    }
    with module_exchange_world(request, tmp_path_factory, **settings) as built:
        issuer = built.hub.settings.issuer
        staff_provider.redirect_uris.add(f"{issuer}/sign-in/oidc/callback")
        staff_provider.redirect_uris.add(oidc.callback_uri(built.hub.settings))
        citizen_provider.redirect_uris.add(f"{issuer}/citizen/sign-in/callback")
        with built.hub.admin() as admin:
            body = {"oidc_subject": "sub-alice", "roles": [{"role": "auditor"}]}
            admin.call("PUT", "/v1/admin/people/alice", body)
        yield built


@pytest.fixture(autouse=True)
def behaviours(staff_provider: Provider, citizen_provider: Provider) -> None:
    staff_provider.behaviour = Behaviour()
    citizen_provider.behaviour = Behaviour()


def person(world: World) -> str:
    """The personal code of someone no other test asks about, with an address on record."""
    code = f"4900108{next(_PEOPLE):04d}"
    world.owner_store.put(ADDRESS, code, ADDRESS_RECORD, announce=False)
    return code


def _cookie_headers(response: httpx.Response) -> dict[str, str]:
    return {line.split("=", 1)[0]: line for line in response.headers.get_list("set-cookie")}


def _attributes(set_cookie: str) -> set[str]:
    """A Set-Cookie line's attributes (after its name and value)."""
    return {part.strip() for part in set_cookie.split(";")[1:]}


def through_provider(browser: httpx.Client, start: str) -> tuple[httpx.Response, str]:
    """Start a sign-in and pass the provider: the start's answer and the callback URL."""
    started = browser.get(start)
    assert started.status_code == 302, started.text
    authorized = httpx.get(started.headers["location"])
    assert authorized.status_code == 302, authorized.text
    return started, authorized.headers["location"]


@contextmanager
def citizen_signed_in(world: World, provider: Provider, identifier: str) -> Iterator[httpx.Client]:
    provider.behaviour.claims = {CLAIM: identifier}
    with httpx.Client(base_url=world.hub.url) as browser:
        _, callback = through_provider(browser, "/citizen/sign-in")
        answer = browser.get(callback)
        assert answer.status_code == 200, answer.text
        yield browser


# --- staff --------------------------------------------------------------------------


def test_staff_sign_in_with_the_provider_starts_a_console_session(world: World) -> None:
    with (
        httpx.Client(base_url=world.hub.url) as browser,
        added_audit_entries(world.hub, action="person.sign-in") as added,
    ):
        page = browser.get("/sign-in")
        assert 'href="/sign-in/oidc"' in page.text
        assert "Sign in with 127.0.0.1" in page.text
        started, callback = through_provider(browser, "/sign-in/oidc")
        login = _attributes(_cookie_headers(started)[cookies.OIDC_LOGIN])
        assert {"HttpOnly", "SameSite=lax", "Path=/", "Max-Age=600"} <= login
        assert not any(part.startswith("Domain") for part in login)  # __Host- in production
        answer = browser.get(callback)
        assert answer.status_code == 200, answer.text
        assert 'http-equiv="refresh" content="0; url=/catalogue"' in answer.text
        session = _cookie_headers(answer)[cookies.SESSION]
        assert "HttpOnly" in session
        assert "SameSite=strict" in session
        lifetime = world.hub.settings.session_lifetime  # at the hub; the browser keeps it longer
        assert f"Max-Age={lifetime + cookies.ENDED_NOTICE_SECONDS}" in session
        assert cookies.OIDC_LOGIN not in browser.cookies  # the callback cleared it
        account = browser.get("/account")
        assert account.status_code == 200
        assert "alice" in account.text
        assert "OpenID Connect" in account.text
    assert [(e["outcome"], e.get("reason"), e["person"]) for e in added] == [
        ("ok", "oidc", "alice")
    ]


def test_the_api_sign_in_with_the_provider_still_shows_its_token_page(world: World) -> None:
    with httpx.Client(base_url=world.hub.url) as browser:
        _, callback = through_provider(browser, "/v1/people/oidc/start")
        page = browser.get(callback)
    assert page.status_code == 200
    assert '<pre id="token">oop_' in page.text
    assert cookies.SESSION not in page.headers.get("set-cookie", "")


def test_staff_whose_identity_is_not_linked_are_told_so_and_audited(
    world: World, staff_provider: Provider
) -> None:
    staff_provider.behaviour.subject = "sub-nobody"
    with (
        httpx.Client(base_url=world.hub.url) as browser,
        added_audit_entries(world.hub, action="person.sign-in") as added,
    ):
        _, callback = through_provider(browser, "/sign-in/oidc")
        answer = browser.get(callback)
        assert answer.status_code == 403
        assert "No account on this hub is linked to your identity" in answer.text
        assert 'href="#oidc-sign-in"' in answer.text
        assert cookies.SESSION not in browser.cookies
    assert [(e["outcome"], e["reason"]) for e in added] == [("refused", "oidc-account-not-linked")]


# --- citizens -----------------------------------------------------------------------


def _fetch(world: World, subject: str, *, purpose: str = PURPOSE) -> None:
    with world.client() as client:
        client.fetch(ADDRESS, subject, purpose=purpose)


def test_a_citizen_sees_their_own_accesses_with_their_proof_and_nothing_else(
    world: World, citizen_provider: Provider
) -> None:
    subject, someone_else = person(world), person(world)
    _fetch(world, subject)
    _fetch(world, someone_else)
    with pytest.raises(AccessDenied):  # a refusal is not an access
        _fetch(world, subject, purpose="marketing")
    with (
        citizen_signed_in(world, citizen_provider, subject) as browser,
        added_audit_entries(world.hub, action="citizen.query") as looked,
    ):
        deadline = time.monotonic() + 10
        while True:  # until the next checkpoint covers the access (the page's own
            page = browser.get("/citizen")  # legend names the status too: read the rows)
            assert page.status_code == 200, page.text
            rows = re.findall(r"<tr class=\"govuk-table__row\">(.*?)</tr>", page.text, re.S)[1:]
            if any("In the signed log" in row for row in rows) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert len(rows) == 1, rows  # one access: not the other person's, not the refusal
    assert "Residential address" in rows[0]
    assert "Deciding eligibility for a social benefit" in rows[0]
    assert "In the signed log" in rows[0]
    assert "Checked against the log signed at" in rows[0]
    assert subject not in page.text
    assert "social-welfare-adapter" not in page.text  # no client, grant or request id
    pseudonym = world.hub.keys.pseudonym(subject)
    assert looked
    assert {entry["subject"] for entry in looked} == {pseudonym}
    assert all("person" not in entry and "client" not in entry for entry in looked)


def test_the_citizens_sign_in_is_audited_under_the_pseudonym_only(
    world: World, citizen_provider: Provider
) -> None:
    subject = person(world)
    with added_audit_entries(world.hub, action="citizen.sign-in") as added:
        with citizen_signed_in(world, citizen_provider, subject):
            pass
    assert [(e["outcome"], e["subject"]) for e in added] == [
        ("ok", world.hub.keys.pseudonym(subject))
    ]
    everything = str(audit_entries(world.hub, action="citizen.sign-in"))
    assert subject not in everything


def test_the_citizens_cookie_is_strict_http_only_and_short(
    world: World, citizen_provider: Provider
) -> None:
    citizen_provider.behaviour.claims = {CLAIM: person(world)}
    with httpx.Client(base_url=world.hub.url) as browser:
        started, callback = through_provider(browser, "/citizen/sign-in")
        login = _attributes(_cookie_headers(started)[cookies.CITIZEN_LOGIN])
        assert {"HttpOnly", "SameSite=lax", "Path=/", "Max-Age=600"} <= login
        assert not any(part.startswith("Domain") for part in login)
        assert cookies.OIDC_LOGIN not in browser.cookies  # the staff's login is its own
        answer = browser.get(callback)
    sealed = _cookie_headers(answer)[cookies.CITIZEN]
    assert "HttpOnly" in sealed
    assert "SameSite=strict" in sealed
    assert f"Max-Age={world.hub.settings.citizen_session_lifetime}" in sealed


def test_a_citizen_reaches_no_staff_page_and_staff_see_no_citizen_page(
    world: World, citizen_provider: Provider
) -> None:
    with citizen_signed_in(world, citizen_provider, person(world)) as browser:
        for path in ("/catalogue", "/account", "/"):
            answer = browser.get(path)
            assert (answer.status_code, answer.headers["location"][:8]) == (303, "/sign-in"), path
        sealed = browser.cookies[cookies.CITIZEN]
    with httpx.Client(base_url=world.hub.url, cookies={cookies.SESSION: sealed}) as forged:
        assert forged.get("/catalogue").status_code == 303
    with httpx.Client(base_url=world.hub.url) as staff:
        _, callback = through_provider(staff, "/sign-in/oidc")
        assert staff.get(callback).status_code == 200
        page = staff.get("/citizen")
        assert page.status_code == 200
        assert 'id="accesses"' not in page.text
        assert 'href="/citizen/sign-in"' in page.text
        assert "Signed in as" not in page.text
        token = staff.cookies[cookies.SESSION]
    with httpx.Client(base_url=world.hub.url, cookies={cookies.CITIZEN: token}) as forged:
        assert 'href="/citizen/sign-in"' in forged.get("/citizen").text


@pytest.mark.parametrize(
    "behaviour",
    [
        Behaviour(foreign_key=True),
        Behaviour(lifetime=-600),
        Behaviour(audience="another-client"),
        Behaviour(nonce="a-nonce-of-another-sign-in"),
    ],
    ids=["forged", "expired", "wrong-audience", "replayed-nonce"],
)
def test_an_id_token_that_is_not_valid_is_refused(
    world: World, citizen_provider: Provider, behaviour: Behaviour
) -> None:
    behaviour.claims = {CLAIM: person(world)}
    citizen_provider.behaviour = behaviour
    with (
        httpx.Client(base_url=world.hub.url) as browser,
        added_audit_entries(world.hub, action="citizen.sign-in") as added,
    ):
        _, callback = through_provider(browser, "/citizen/sign-in")
        answer = browser.get(callback)
        assert answer.status_code == 401
        assert "could not be checked" in answer.text
        assert cookies.CITIZEN not in browser.cookies
    assert [(e["outcome"], e["reason"]) for e in added] == [("refused", "oidc-id-token-invalid")]


def test_a_callback_replayed_with_its_cookie_is_refused(
    world: World, citizen_provider: Provider
) -> None:
    citizen_provider.behaviour.claims = {CLAIM: person(world)}
    with httpx.Client(base_url=world.hub.url) as browser:
        _, callback = through_provider(browser, "/citizen/sign-in")
        login = browser.cookies[cookies.CITIZEN_LOGIN]
        assert browser.get(callback).status_code == 200
    with httpx.Client(base_url=world.hub.url) as attacker:
        attacker.cookies.set(cookies.CITIZEN_LOGIN, login, path="/")
        replayed = attacker.get(callback)
        assert replayed.status_code == 400
        assert "took too long, or was already used" in replayed.text
        assert cookies.CITIZEN not in attacker.cookies
    with (
        httpx.Client(base_url=world.hub.url) as starter,
        httpx.Client(base_url=world.hub.url) as other_browser,  # no login cookie at all
    ):
        _, callback = through_provider(starter, "/citizen/sign-in")
        assert other_browser.get(callback).status_code == 400


def test_an_id_token_without_the_identifier_claim_is_refused(
    world: World, citizen_provider: Provider
) -> None:
    with (
        httpx.Client(base_url=world.hub.url) as browser,
        added_audit_entries(world.hub, action="citizen.sign-in") as added,
    ):
        _, callback = through_provider(browser, "/citizen/sign-in")
        assert browser.get(callback).status_code == 401
    assert [e["reason"] for e in added] == ["citizen-identifier-missing"]


FULL_WIDTH = "".join(chr(0xFF10 + int(digit)) for digit in "38001085718")


@pytest.mark.parametrize("identifier", ["38001085718 ", FULL_WIDTH, "3800108\u200b5718"])
def test_an_identifier_the_subject_rule_refuses_signs_no_one_in(
    world: World, citizen_provider: Provider, identifier: str
) -> None:
    """The record query refuses such a spelling (decision 0072), so no access is filed
    under it: a page for it would tell the person that nobody used their data."""
    citizen_provider.behaviour.claims = {CLAIM: identifier}
    with (
        httpx.Client(base_url=world.hub.url) as browser,
        added_audit_entries(world.hub, action="citizen.sign-in") as added,
    ):
        _, callback = through_provider(browser, "/citizen/sign-in")
        assert browser.get(callback).status_code == 401
        assert cookies.CITIZEN not in browser.cookies
    assert [e["reason"] for e in added] == ["citizen-identifier-missing"]


def test_a_citizen_signs_out_with_the_form_only(world: World, citizen_provider: Provider) -> None:
    with citizen_signed_in(world, citizen_provider, person(world)) as browser:
        page = browser.get("/citizen")
        assert browser.post("/citizen/sign-out", data={"csrf_token": "forged"}).status_code == 403
        token = _CSRF.search(page.text)
        assert token is not None
        answer = browser.post("/citizen/sign-out", data={"csrf_token": token.group(1)})
        assert (answer.status_code, answer.headers["location"]) == (303, "/citizen?signed_out=1")
        assert cookies.CITIZEN not in browser.cookies
        assert "You have signed out." in browser.get(answer.headers["location"]).text


def _facts_generation(world: World) -> int:
    """The record queries' facts generation (decision 0038), as the database has it."""
    engine = make_sync_engine(world.hub.settings.database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT value FROM facts_generation")).scalar_one())
    finally:
        engine.dispose()


def test_a_citizens_sign_out_ends_the_sign_in_at_the_hub(
    world: World, citizen_provider: Provider
) -> None:
    """A copy of the cookie taken before signing out opens nothing afterwards (as a staff
    session's: test_console_http.py), and the sign-out is audited under the pseudonym."""
    identifier = person(world)
    with (
        citizen_signed_in(world, citizen_provider, identifier) as browser,
        added_audit_entries(world.hub, action="citizen.sign-out") as added,
    ):
        copied = browser.cookies[cookies.CITIZEN]
        page = browser.get("/citizen")
        assert 'id="accesses"' in page.text or "No department has read" in page.text
        token = _CSRF.search(page.text)
        assert token is not None
        generation = _facts_generation(world)
        answer = browser.post("/citizen/sign-out", data={"csrf_token": token.group(1)})
        assert answer.status_code == 303
        assert _facts_generation(world) == generation  # no replica's facts cache emptied
    with httpx.Client(base_url=world.hub.url, cookies={cookies.CITIZEN: copied}) as replay:
        again = replay.get("/citizen")
        assert again.status_code == 200
        assert "No department has read" not in again.text
        assert "Your sign-in has ended" in again.text  # the sign-in page, not the accesses
    pseudonym = world.hub.keys.pseudonym(identifier)
    assert [(e["outcome"], e["subject"], e.get("person")) for e in added] == [
        ("ok", pseudonym, None)
    ]


def test_a_citizens_sign_in_ends_after_its_lifetime(world: World) -> None:
    keys, settings = world.hub.keys, world.hub.settings
    sealed = citizens.start_session(identifier="x", keys=keys, settings=settings, now=1000)
    assert citizens.session_of(sealed, keys=keys, now=1000) is not None
    assert (
        citizens.session_of(sealed, keys=keys, now=1000 + settings.citizen_session_lifetime) is None
    )
    assert citizens.session_of(sealed[:-2] + "AA", keys=keys, now=1000) is None


def test_a_citizen_without_accesses_is_told_so(world: World, citizen_provider: Provider) -> None:
    with citizen_signed_in(world, citizen_provider, person(world)) as browser:
        page = browser.get("/citizen")
    assert page.status_code == 200, page.text
    assert "No department has read your records through the exchange." in page.text
    assert 'id="accesses"' not in page.text


def test_a_signed_out_visitor_reaches_no_console_page_but_a_sign_in_page(
    world: World, staff_provider: Provider
) -> None:
    """Every GET route of the console, as the app's router has them (the browser's walk
    is test_story_browser.py's, on the embedded database: decision 0033)."""
    staff_provider.behaviour = Behaviour(subject="sub-of-nobody")  # linked to no account
    with httpx.Client(base_url=world.hub.url, follow_redirects=True) as browser:
        for path in console_page_paths():
            if path.startswith("/citizen/sign-in"):
                continue  # the citizen's sign-in goes to the provider, which signs one in
            answer = browser.get(path)
            if path == "/sign-in/oidc/command-line":  # decision 0095: nothing waits here
                assert answer.status_code == 400, answer.text
                assert "No command-line sign-in is waiting" in answer.text
                assert 'id="confirm"' not in answer.text
            elif path.startswith("/citizen"):  # signed out: the citizen's way in only
                assert 'href="/citizen/sign-in"' in answer.text, path
                assert 'id="accesses"' not in answer.text, path
            else:  # /sign-in/oidc comes back to its callback: the sign-in page
                landed = answer.url.path
                assert landed in ("/sign-in", "/sign-in/oidc/callback"), (path, landed)
                assert 'name="password"' in answer.text, path
        assert "onceonly-console" not in browser.cookies
