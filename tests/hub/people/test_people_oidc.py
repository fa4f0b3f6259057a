"""People sign in with an OpenID Connect provider: in a browser, and from the CLI.

A real (minimal) provider runs on loopback beside the hub (``oidc_provider.py``); the
"browser" is an httpx client that follows redirects and keeps cookies. One hub per
database serves the module; each test sets the provider's behaviour afresh.
"""

import html
import json
import re
import time
import webbrowser
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from onceonly.hub.cli import main
from onceonly.hub.cli.admin_client import AdminError
from onceonly.hub.cli.oidc_login import oidc_login
from onceonly.hub.console import cookies
from onceonly.hub.people import oidc
from onceonly.hub.people.schemas import PersonOut, SessionOut

from tests.hub.oidc_provider import CLIENT_ID, CLIENT_SECRET, Behaviour, Provider, running_provider
from tests.hub_testing import (
    DATABASES,
    TEST_PASSWORD,
    RunningHub,
    audit_entry_for,
    module_database,
    problem_type,
    running_hub,
)

CLI_PORT = 65000  # nobody listens: tests that stop at the loopback redirect never follow it
CLI_STATE = "the-cli-state-of-these-tests"
POLL = 0.01  # oidc_login's listener stops this soon after the sign-in (by default 0.5 s)


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with running_provider() as running:
        yield running


@pytest.fixture(scope="module", params=DATABASES)
def hub(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    provider: Provider,
) -> Iterator[RunningHub]:
    with running_hub(
        database_url=module_database(request, tmp_path_factory),
        data_dir=tmp_path_factory.mktemp("hub"),
        oidc_issuer=provider.url,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
    ) as running:
        provider.redirect_uris.add(oidc.callback_uri(running.settings))
        with running.admin() as admin:
            for username, subject, status in (
                ("alice", "sub-alice", "active"),
                ("bob", "sub-bob", "disabled"),
            ):
                body = {"oidc_subject": subject, "roles": [{"role": "auditor"}], "status": status}
                admin.call("PUT", f"/v1/admin/people/{username}", body)
        yield running


@pytest.fixture(autouse=True)
def behaviour(provider: Provider) -> Behaviour:
    provider.behaviour = Behaviour()
    return provider.behaviour


def browser() -> httpx.Client:
    return httpx.Client(follow_redirects=True, timeout=30)


def me(hub: RunningHub, token: str) -> httpx.Response:
    return httpx.get(f"{hub.url}/v1/people/me", headers={"Authorization": f"Bearer {token}"})


def token_on(page: httpx.Response) -> str:
    found = re.search(r'<pre id="token">([^<]+)</pre>', page.text)
    assert found is not None, page.text
    return html.unescape(found.group(1))


def callback_url(client: httpx.Client, hub: RunningHub, *, cli_port: int | None = None) -> str:
    """Start a sign-in and go through the provider, stopping before the hub's callback."""
    params = {"cli_port": cli_port, "cli_state": CLI_STATE} if cli_port else {}
    started = client.get(f"{hub.url}/v1/people/oidc/start", params=params, follow_redirects=False)
    assert started.status_code == 302, started.text
    authorized = client.get(started.headers["location"], follow_redirects=False)
    assert authorized.status_code == 302, authorized.text
    return authorized.headers["location"]


def login_cookie(client: httpx.Client) -> str:
    value = client.cookies.get(cookies.API_LOGIN)
    assert value is not None
    return value


CONFIRMATION_PAGE = "/sign-in/oidc/command-line"
_FORM_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
_LOOPBACK = re.compile(r'<a id="continue" class="govuk-link" href="([^"]+)"')


def form_token(page: httpx.Response) -> str:
    """The token of the confirmation page's form."""
    assert urlsplit(str(page.url)).path == CONFIRMATION_PAGE, page.url
    found = _FORM_TOKEN.search(page.text)
    assert found is not None, page.text
    return html.unescape(found.group(1))


def confirm(client: httpx.Client, page: httpx.Response) -> httpx.Response:
    """The person's yes on the confirmation page ``page``: the page that hands the
    sign-in on to the CLI (it is not followed)."""
    released = client.post(str(page.url), data={"csrf_token": form_token(page)})
    assert released.status_code == 200, released.text
    return released


def loopback_of(released: httpx.Response) -> str:
    """Where the page after the person's yes sends the browser (a link, and a refresh)."""
    found = _LOOPBACK.search(released.text)
    assert found is not None, released.text
    return html.unescape(found.group(1))


def sign_in_cli(url: str, visited: list[str] | None = None) -> httpx.Response:
    """The browser's part of ``onceonly login --oidc``: the start URL through the
    provider to the hub's confirmation page, the person's yes, and the CLI's listener."""
    with browser() as client:
        page = client.get(url)
        released = confirm(client, page)
        done = client.get(loopback_of(released))
    if visited is not None:
        visited.extend(str(r.url) for r in [*page.history, page, released, done])
    return done


def one_time_code(hub: RunningHub) -> str:
    """A CLI sign-in up to the hand-over to the CLI's loopback listener: its code."""
    with browser() as client:
        back = client.get(callback_url(client, hub, cli_port=CLI_PORT), follow_redirects=False)
        assert back.status_code == 303, back.text
        assert back.headers["location"] == CONFIRMATION_PAGE
        released = confirm(client, client.get(f"{hub.url}{CONFIRMATION_PAGE}"))
    location = urlsplit(loopback_of(released))
    assert (location.hostname, location.port, location.path) == ("127.0.0.1", CLI_PORT, "/callback")
    query = parse_qs(location.query)
    assert query["state"] == [CLI_STATE]
    return query["code"][0]


def redeem(hub: RunningHub, code: str) -> httpx.Response:
    return httpx.post(f"{hub.url}/v1/people/oidc/token", json={"code": code})


def assert_refused(
    hub: RunningHub, response: httpx.Response, *, slug: str, status: int, action: str
) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert problem_type(response) == slug
    entry = audit_entry_for(hub, response, action=action)
    assert (entry["outcome"], entry["reason"]) == ("refused", slug)
    return entry


# --- signing in ---------------------------------------------------------------------


def test_browser_sign_in_shows_a_token_that_works(hub: RunningHub) -> None:
    with browser() as client:
        page = client.get(f"{hub.url}/v1/people/oidc/start")
        assert cookies.API_LOGIN not in client.cookies  # the callback cleared it
    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["content-type"].startswith("text/html")
    token = token_on(page)
    assert token.startswith("oop_")
    assert me(hub, token).json()["username"] == "alice"
    assert "oidc" in me(hub, token).json()["sign_in"]
    entry = audit_entry_for(hub, page, action="person.sign-in")
    assert (entry["outcome"], entry["person"], entry["reason"]) == ("ok", "alice", "oidc")


def test_authorization_request_uses_pkce_state_and_nonce(hub: RunningHub) -> None:
    with browser() as client:
        started = client.get(f"{hub.url}/v1/people/oidc/start", follow_redirects=False)
    query = parse_qs(urlsplit(started.headers["location"]).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [f"{hub.settings.issuer}/v1/people/oidc/callback"]
    assert query["client_id"] == [CLIENT_ID]
    assert {"state", "nonce", "code_challenge"} <= set(query)
    assert started.headers["cache-control"] == "no-store"
    cookie = started.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert cookie.startswith(f"{cookies.API_LOGIN}=")  # development: no __Host- prefix
    assert "path=/;" in cookie  # as __Host- requires in production (decision 0068)
    assert "domain" not in cookie
    assert "samesite=lax" in cookie


def test_cli_signs_in_through_the_browser(
    hub: RunningHub, capsys: pytest.CaptureFixture[str]
) -> None:
    visited: list[str] = []

    def open_browser(url: str) -> None:
        done = sign_in_cli(url, visited)
        assert done.status_code == 200
        assert "Signed in" in done.text

    signed_in = oidc_login(hub.url, open_browser=open_browser, timeout=30, poll_interval=POLL)

    assert signed_in["person"]["username"] == "alice"
    assert me(hub, signed_in["token"]).status_code == 200
    assert visited[-1].startswith("http://127.0.0.1:")
    assert "/callback?code=" in visited[-1]
    assert not any(signed_in["token"] in url for url in visited)  # never in a URL
    printed = capsys.readouterr().out
    assert "/v1/people/oidc/start?cli_port=" in printed
    assert signed_in["token"] not in printed
    assert "code=" not in printed


def test_onceonly_login_oidc_keeps_the_sign_in(
    hub: RunningHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The command a person types: the browser part done by httpx, the rest as shipped."""

    opened: list[str] = []

    def follow(url: str) -> None:
        opened.append(url)
        assert sign_in_cli(url).status_code == 200

    # The standard library's own extension point: the browser that webbrowser.open uses.
    webbrowser.register(TEST_BROWSER, None, _Browser(follow), preferred=True)
    monkeypatch.setenv("ONCEONLY_SESSION_FILE", str(tmp_path / "session.json"))
    monkeypatch.delenv("ONCEONLY_TOKEN", raising=False)
    assert main(["login", "--oidc", "--hub", hub.url]) == 0
    assert "signed in as alice" in capsys.readouterr().out
    kept = json.loads((tmp_path / "session.json").read_text())[hub.url]
    assert me(hub, kept["token"]).status_code == 200
    assert len(opened) == 1


TEST_BROWSER = "onceonly-test-browser"


class _Browser(webbrowser.BaseBrowser):
    """A browser for webbrowser.open that follows the URL with httpx, once: after
    that it refuses, so that no later test can open a page through it unnoticed."""

    def __init__(self, follow: Callable[[str], None]) -> None:
        super().__init__(TEST_BROWSER)
        self._follow: Callable[[str], None] | None = follow

    def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
        follow, self._follow = self._follow, None
        assert follow is not None, f"a second browser opened {url}"
        follow(url)
        return True


def test_cli_ignores_a_code_without_its_state(hub: RunningHub) -> None:
    """A page that sends the browser to the CLI's listener with a code of its own (a
    sign-in of the attacker's) is ignored; the person's own sign-in is kept."""
    planted = one_time_code(hub)

    def open_browser(url: str) -> None:
        port = parse_qs(urlsplit(url).query)["cli_port"][0]
        forged = httpx.get(f"http://127.0.0.1:{port}/callback", params={"code": planted})
        assert forged.status_code == 404
        assert sign_in_cli(url).status_code == 200

    signed_in = oidc_login(hub.url, open_browser=open_browser, timeout=30, poll_interval=POLL)
    assert me(hub, signed_in["token"]).status_code == 200
    assert redeem(hub, planted).status_code == 200  # the planted code was never spent


def test_cli_gives_up_when_no_sign_in_comes_back(hub: RunningHub) -> None:
    with pytest.raises(TimeoutError):
        oidc_login(hub.url, open_browser=lambda url: None, timeout=0.2, poll_interval=POLL)


def test_one_time_code_works_once(hub: RunningHub) -> None:
    code = one_time_code(hub)
    first = redeem(hub, code)
    assert first.status_code == 200, first.text
    assert first.headers["cache-control"] == "no-store"
    assert me(hub, first.json()["token"]).json()["username"] == "alice"
    entry = audit_entry_for(hub, first, action="person.sign-in-code")
    assert (entry["outcome"], entry["person"]) == ("ok", "alice")

    second = redeem(hub, code)
    entry = assert_refused(
        hub, second, slug="oidc-code-invalid", status=400, action="person.sign-in-code"
    )
    assert "already used" in second.json()["detail"]
    assert entry["person"] == "alice"


def test_cli_helper_reports_a_refused_code(hub: RunningHub) -> None:
    code = one_time_code(hub)
    assert redeem(hub, code).status_code == 200

    def replay(url: str) -> None:
        query = parse_qs(urlsplit(url).query)
        params = {"code": code, "state": query["cli_state"][0]}
        httpx.get(f"http://127.0.0.1:{query['cli_port'][0]}/callback", params=params)

    with pytest.raises(AdminError) as refused:
        oidc_login(hub.url, open_browser=replay, timeout=30, poll_interval=POLL)
    assert refused.value.status == 400


# --- refusals -----------------------------------------------------------------------


def test_refuses_a_subject_no_account_is_linked_to(hub: RunningHub, behaviour: Behaviour) -> None:
    behaviour.subject = "sub-nobody"
    with browser() as client:
        refused = client.get(f"{hub.url}/v1/people/oidc/start")
    entry = assert_refused(
        hub, refused, slug="oidc-account-not-linked", status=403, action="person.sign-in"
    )
    assert "person" not in entry
    assert "'sub-nobody'" in refused.json()["detail"]  # what to tell an administrator


def test_refuses_a_disabled_person(hub: RunningHub, behaviour: Behaviour) -> None:
    behaviour.subject = "sub-bob"
    with browser() as client:
        refused = client.get(f"{hub.url}/v1/people/oidc/start")
    entry = assert_refused(
        hub, refused, slug="oidc-account-disabled", status=403, action="person.sign-in"
    )
    assert entry["person"] == "bob"


@pytest.mark.parametrize(
    ("misbehaviour", "value"),
    [
        ("nonce", "a-nonce-of-another-sign-in"),
        ("audience", "another-client"),
        ("audience", [CLIENT_ID, "another-client"]),  # several audiences and no azp
        ("lifetime", -120),
        ("foreign_key", True),
    ],
    ids=["wrong-nonce", "wrong-audience", "several-audiences", "expired", "bad-signature"],
)
def test_refuses_an_id_token_that_is_not_valid(
    hub: RunningHub, behaviour: Behaviour, misbehaviour: str, value: object
) -> None:
    setattr(behaviour, misbehaviour, value)
    with browser() as client:
        refused = client.get(f"{hub.url}/v1/people/oidc/start")
    assert_refused(hub, refused, slug="oidc-id-token-invalid", status=401, action="person.sign-in")


@pytest.mark.parametrize("where", ["authorize_error", "token_error"])
def test_refuses_when_the_provider_says_no(
    hub: RunningHub, behaviour: Behaviour, where: str
) -> None:
    setattr(behaviour, where, "access_denied")
    with browser() as client:
        refused = client.get(f"{hub.url}/v1/people/oidc/start")
    assert_refused(hub, refused, slug="oidc-provider-refused", status=401, action="person.sign-in")
    assert "access_denied" in refused.json()["detail"]


def test_refuses_a_tampered_state(hub: RunningHub) -> None:
    with browser() as client:
        url = callback_url(client, hub)
        state = parse_qs(urlsplit(url).query)["state"][0]
        refused = client.get(url.replace(state, state[:-2] + "xx"))
    assert_refused(hub, refused, slug="oidc-state-invalid", status=400, action="person.sign-in")


def test_refuses_a_tampered_login_cookie(hub: RunningHub) -> None:
    with browser() as client:
        url = callback_url(client, hub)
        cookie = login_cookie(client)
        forged = cookie[:20] + ("A" if cookie[20] != "A" else "B") + cookie[21:]
        client.cookies.clear()
        refused = client.get(url, headers={"Cookie": f"{cookies.API_LOGIN}={forged}"})
    assert_refused(hub, refused, slug="oidc-state-invalid", status=400, action="person.sign-in")


def test_refuses_a_callback_in_another_browser(hub: RunningHub) -> None:
    """Login CSRF: a callback URL sent to someone else finds no sign-in cookie there."""
    with browser() as attacker:
        url = callback_url(attacker, hub)
    with browser() as victim:
        refused = victim.get(url)
    assert_refused(hub, refused, slug="oidc-state-invalid", status=400, action="person.sign-in")


def test_refuses_an_expired_login(hub: RunningHub) -> None:
    past = int(time.time()) - 1
    login = oidc.LoginState(state="s", nonce="n", verifier="v" * 43, cli_port=None, expires=past)
    refused = httpx.get(
        f"{hub.url}/v1/people/oidc/callback",
        params={"state": "s", "code": "c"},
        headers={"Cookie": f"{cookies.API_LOGIN}={login.seal(hub.keys)}"},
    )
    assert_refused(hub, refused, slug="oidc-state-invalid", status=400, action="person.sign-in")
    assert "longer than" in refused.json()["detail"]


def test_refuses_a_callback_replayed_with_its_cookie(hub: RunningHub) -> None:
    with browser() as client:
        url = callback_url(client, hub)
        headers = {"Cookie": f"{cookies.API_LOGIN}={login_cookie(client)}"}
        client.cookies.clear()
        assert client.get(url, headers=headers).status_code == 200
        refused = client.get(url, headers=headers)
    assert_refused(hub, refused, slug="oidc-state-invalid", status=400, action="person.sign-in")
    assert "already completed" in refused.json()["detail"]


def test_refuses_a_tampered_code(hub: RunningHub) -> None:
    code = one_time_code(hub)
    forged = code[:30] + ("A" if code[30] != "A" else "B") + code[31:]
    refused = redeem(hub, forged)
    assert_refused(hub, refused, slug="oidc-code-invalid", status=400, action="person.sign-in-code")


def test_refuses_an_expired_code(hub: RunningHub) -> None:
    person = PersonOut(username="alice", display_name="", status="active", roles=[], sign_in=[])
    session = SessionOut(token="oop_not-a-session", expires_at=datetime.now(UTC), person=person)
    code = oidc.one_time_code(session, keys=hub.keys, now=int(time.time()) - 120)
    refused = redeem(hub, code)
    assert_refused(hub, refused, slug="oidc-code-invalid", status=400, action="person.sign-in-code")
    assert "older than" in refused.json()["detail"]


def test_refuses_everything_when_no_provider_is_configured(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data_dir = tmp_path_factory.mktemp("hub")
    with running_hub(database_url=database_url, data_dir=data_dir) as plain:
        started = httpx.get(f"{plain.url}/v1/people/oidc/start")
        called_back = httpx.get(f"{plain.url}/v1/people/oidc/callback?state=s&code=c")
        traded = redeem(plain, "a-code")
        assert started.status_code == 404
        assert problem_type(started) == "oidc-not-configured"
        for refused in (called_back, traded):
            assert problem_type(refused) == "oidc-not-configured"
        assert_refused(
            plain, called_back, slug="oidc-not-configured", status=404, action="person.sign-in"
        )


def test_linking_another_subject_ends_the_accounts_sessions(hub: RunningHub) -> None:
    """Whoever signed in before the account was linked to another identity at the
    provider (a reassigned or compromised one) is signed out, as after a password reset."""
    with hub.admin() as admin:
        body = {"password": TEST_PASSWORD, "oidc_subject": "sub-carol"}
        body["roles"] = [{"role": "auditor"}]
        admin.call("PUT", "/v1/admin/people/carol", body)
        signed = httpx.post(
            f"{hub.url}/v1/people/sign-in", json={"username": "carol", "password": TEST_PASSWORD}
        )
        assert signed.status_code == 200, signed.text
        token = signed.json()["token"]
        admin.call("PUT", "/v1/admin/people/carol", {"oidc_subject": "sub-carol"})  # unchanged
        assert me(hub, token).status_code == 200
        admin.call("PUT", "/v1/admin/people/carol", {"oidc_subject": "sub-carol-new"})
    assert me(hub, token).status_code == 401


@pytest.mark.parametrize("interval", [0, -1.0])
def test_oidc_login_refuses_a_listener_that_would_not_block(interval: float) -> None:
    with pytest.raises(ValueError, match="poll_interval"):
        oidc_login("http://127.0.0.1:9", poll_interval=interval)
