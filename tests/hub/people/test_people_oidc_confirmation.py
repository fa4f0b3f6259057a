"""A command-line sign-in is confirmed in the browser before its code leaves the hub
(decision 0095; review 176: any web page could send a staff member signed in at the
provider through ``/v1/people/oidc/start?cli_port=P``, and whoever listened on port P
of their computer traded the one-time code for their session).

The provider and the hub are test_people_oidc.py's (one hub per database for this
module); the "browser" is an httpx client, and a listener on a loopback port stands for
whoever listens there."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from onceonly.hub.cli.oidc_login import oidc_login
from onceonly.hub.console import cookies
from onceonly.hub.people import oidc

from tests.hub.people import test_people_oidc
from tests.hub.people.test_people_oidc import (
    CONFIRMATION_PAGE,
    POLL,
    browser,
    confirm,
    form_token,
    loopback_of,
    me,
    sign_in_cli,
)
from tests.hub_testing import RunningHub, added_audit_entries

# test_people_oidc.py's provider and hubs (one per database, for this module too).
provider = test_people_oidc.provider
hub = test_people_oidc.hub
behaviour = test_people_oidc.behaviour

REFUSED = ("refused", "oidc-confirmation-refused")


class _Heard(BaseHTTPRequestHandler):
    server: "_Listener"

    def do_GET(self) -> None:
        self.server.heard.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent."""


class _Listener(HTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Heard)
        self.heard: list[str] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@contextmanager
def listening() -> Iterator[_Listener]:
    """Whoever listens on a loopback port of the person's computer (not the CLI)."""
    with _Listener() as listener:
        thread = threading.Thread(target=listener.serve_forever, args=(0.01,), daemon=True)
        thread.start()
        try:
            yield listener
        finally:
            listener.shutdown()
            thread.join(timeout=5)


def started_by_a_page(client: httpx.Client, hub: RunningHub, port: int) -> httpx.Response:
    """What another site's page does: send the browser to the start URL, which it follows
    through the provider (the person is signed in there) back to the hub."""
    params = {"cli_port": port, "cli_state": "A" * 16}
    return client.get(f"{hub.url}/v1/people/oidc/start", params=params)


def test_a_sign_in_a_page_started_stops_at_the_confirmation_with_no_code_sent(
    hub: RunningHub,
) -> None:
    with listening() as listener, browser() as victim:
        with added_audit_entries(hub, action="person.sign-in") as signed_in:
            page = started_by_a_page(victim, hub, listener.port)
        assert page.status_code == 200, page.text
        assert urlsplit(str(page.url)).path == CONFIRMATION_PAGE
        assert f"(port {listener.port})" in page.text
        assert "alice" in page.text
    assert listener.heard == []  # no code went to the port
    assert signed_in == []  # and no session started


def test_the_confirmation_cannot_be_framed_and_refuses_a_form_without_its_token(
    hub: RunningHub,
) -> None:
    with listening() as listener, browser() as client:
        page = started_by_a_page(client, hub, listener.port)
        assert page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        with added_audit_entries(hub, action="person.sign-in") as refused:
            wrong = client.post(str(page.url), data={"csrf_token": "A" * 43})
            missing = client.post(str(page.url), data={})
            # Another site's form: no login cookie comes with it (SameSite=Lax, a POST).
            elsewhere = httpx.post(str(page.url), data={"csrf_token": form_token(page)})
        for answer in (wrong, missing, elsewhere):
            assert answer.status_code == 403, answer.text
            assert "The command line was not signed in" in answer.text
            assert "/callback?" not in answer.text
        assert [((e["outcome"], e["reason"]), e.get("person")) for e in refused] == [
            (REFUSED, "alice"),
            (REFUSED, "alice"),
            (REFUSED, None),
        ]
        assert listener.heard == []

        sealed = client.cookies[cookies.API_LOGIN]
        released = confirm(client, page)  # the person's own yes still holds
        assert client.get(loopback_of(released)).status_code == 200
        assert cookies.API_LOGIN not in client.cookies  # the page removed it
    (heard,) = listener.heard
    assert parse_qs(urlsplit(heard).query)["state"] == ["A" * 16]

    replayed = httpx.post(
        str(page.url),
        data={"csrf_token": form_token(page)},
        headers={"Cookie": f"{cookies.API_LOGIN}={sealed}"},
    )
    assert replayed.status_code == 403  # a yes is given once


def test_onceonly_login_signs_in_once_the_person_confirms(hub: RunningHub) -> None:
    confirmed: list[str] = []

    def open_browser(url: str) -> None:
        with added_audit_entries(hub, action="person.sign-in") as entries:
            assert sign_in_cli(url, confirmed).status_code == 200
        assert [(e["outcome"], e["person"], e["reason"]) for e in entries] == [
            ("ok", "alice", "oidc")
        ]

    signed_in = oidc_login(hub.url, open_browser=open_browser, timeout=30, poll_interval=POLL)
    assert me(hub, signed_in["token"]).json()["username"] == "alice"
    assert any(urlsplit(url).path == CONFIRMATION_PAGE for url in confirmed)


def test_a_command_line_login_brought_to_the_consoles_callback_is_refused(
    hub: RunningHub, provider: Any
) -> None:
    """A review (helper-184): the API's login cookie, sent under the console's name to
    the console's callback with a code the provider issued for it (one client id, both
    callbacks registered), was opened there, and the console answered 500 (an
    AssertionError). It is a refusal of the sign-in, audited, and no session starts."""
    console_callback = f"{hub.url}/sign-in/oidc/callback"
    provider.redirect_uris.add(console_callback)
    with browser() as attacker:
        attacker.follow_redirects = False
        start = attacker.get(
            f"{hub.url}/v1/people/oidc/start", params={"cli_port": 1024, "cli_state": "B" * 16}
        )
        api_cookie = next(c.value for c in attacker.cookies.jar if "api-login" in c.name)
        authorize = urlsplit(start.headers["location"])
        query = {k: v[0] for k, v in parse_qs(authorize.query).items()}
        query["redirect_uri"] = console_callback
        to_callback = httpx.get(authorize._replace(query="").geturl(), params=query)
        callback = to_callback.headers["location"]
        assert callback.startswith(console_callback)
        with added_audit_entries(hub, action="person.sign-in") as entries:
            answer = httpx.get(
                callback,
                cookies={cookies.OIDC_LOGIN: api_cookie},
                headers={"Accept": "text/html"},
            )
    assert answer.status_code == 400, answer.text[:300]
    assert "onceonly-console=" not in answer.headers.get("set-cookie", "")  # no session
    assert [(e["outcome"], e["reason"]) for e in entries] == [("refused", "oidc-state-invalid")]


def test_an_expired_confirmation_is_refused_naming_whom_it_was_for(hub: RunningHub) -> None:
    """A review (helper-184): the refusal of a confirmation that waited too long named
    nobody, though its cookie says whose sign-in it was."""
    with listening() as listener, browser() as client:
        page = started_by_a_page(client, hub, listener.port)
        token = form_token(page)
        sealed = next(c.value for c in client.cookies.jar if "api-login" in c.name)
    pending = oidc.CliConfirmation.open(sealed, keys=hub.keys, now=0)
    late = replace(pending, expires=1).seal(hub.keys)
    with added_audit_entries(hub, action="person.sign-in") as refused:
        answer = httpx.post(
            str(page.url),
            data={"csrf_token": token},
            cookies={cookies.API_LOGIN: late},
        )
    assert answer.status_code == 403
    assert [((e["outcome"], e["reason"]), e.get("person")) for e in refused] == [(REFUSED, "alice")]
