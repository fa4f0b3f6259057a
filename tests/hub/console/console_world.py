"""A hub with the starter catalogue and one person per role, for the console's tests.

Built once per module and database (``console_world``). The hub reads time from a
ManualClock: a test that needs a fresh one-time code moves it one TOTP step on
(``next_code``), one that needs a session to end moves it past ``session_lifetime``.
Each test signs in for itself, so moving the clock ends no other test's session.
"""

import base64
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import httpx
from fastapi.routing import APIRoute, iter_route_contexts

from onceonly.hub.app import create_app
from onceonly.hub.kit.clock import ManualClock
from onceonly.hub.people import credentials

from tests.hub_testing import CATALOGUE, TEST_PASSWORD, RunningHub, running_hub

STEWARD, OTHER_STEWARD, AUDITOR, ADMINISTRATOR = "cecilia", "tomas", "ivo", "ada"
PEOPLE = {
    STEWARD: ("Cecilia Kask", {"role": "steward", "department": "civil-registry"}),
    OTHER_STEWARD: ("Tomas Tamm", {"role": "steward", "department": "tax"}),
    AUDITOR: ("Ivo Ilves", {"role": "auditor"}),
    ADMINISTRATOR: ("Ada Aru", {"role": "administrator"}),
}
_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


@dataclass
class ConsoleWorld:
    hub: RunningHub
    clock: ManualClock
    totp_secret: str  # the steward's (cecilia's) one-time-code secret

    @property
    def url(self) -> str:
        return self.hub.url

    def next_code(self) -> str:
        """The steward's code, one TOTP step later than any used before (a code is
        accepted once)."""
        self.clock.advance(credentials.TOTP_PERIOD)
        key = base64.b32decode(self.totp_secret + "=" * (-len(self.totp_secret) % 8))
        return credentials.hotp(key, credentials.totp_step(self.clock.time()))

    def browser(self) -> httpx.Client:
        """A client that keeps cookies, as a browser does (redirects not followed)."""
        return httpx.Client(base_url=self.url)

    @contextmanager
    def signed_in(self, username: str) -> Iterator[httpx.Client]:
        """A browser signed in as ``username`` (with a fresh code for the steward)."""
        with self.browser() as client:
            code = self.next_code() if username == STEWARD else ""
            answer = sign_in(client, username, TEST_PASSWORD, code=code)
            assert answer.status_code == 303, answer.text
            yield client


def csrf_token(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


@dataclass(frozen=True)
class ServedForm:
    """A form as the page serves it: where it posts, how, and the names it submits."""

    action: str
    method: str
    names: frozenset[str]


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[ServedForm] = []
        self._open: tuple[str, str, set[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self._open = (
                values.get("action") or "",
                (values.get("method") or "get").lower(),
                set(),
            )
        elif self._open is not None and tag in ("input", "select", "textarea", "button"):
            if values.get("name"):
                self._open[2].add(str(values["name"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._open is not None:
            action, method, names = self._open
            self.forms.append(ServedForm(action, method, frozenset(names)))
            self._open = None


def post_served_form(
    client: httpx.Client, html: str, action: str, data: dict[str, str]
) -> httpx.Response:
    """Post ``data`` as a browser without JavaScript posts the form of ``html`` whose
    action is ``action``: only if the page serves such a form, with method POST, and
    every name in ``data`` is one of its fields (a form that needed a script to post
    these fields would fail here)."""
    parser = _Forms()
    parser.feed(html)
    forms = [form for form in parser.forms if form.action == action]
    assert forms, f"the page serves no form posting to {action}"
    form = forms[0]
    assert form.method == "post", form
    unknown = set(data) - form.names
    assert not unknown, f"the form posting to {action} has no field {sorted(unknown)}"
    return client.post(action, data=data)


def sign_in(
    client: httpx.Client, username: str, password: str, *, code: str = "", next_path: str = ""
) -> httpx.Response:
    """Sign in through the console's form, as a browser does: the page, then its POST."""
    page = client.get("/sign-in").text
    form = {"csrf_token": csrf_token(page), "username": username, "password": password}
    form |= {"code": code, "next": next_path or "/catalogue"}
    return post_served_form(client, page, "/sign-in", form)


def _enrol_totp(hub: RunningHub, clock: ManualClock, username: str) -> str:
    signed = httpx.post(
        f"{hub.url}/v1/people/sign-in", json={"username": username, "password": TEST_PASSWORD}
    )
    headers = {"Authorization": f"Bearer {signed.json()['token']}"}
    enrolment = httpx.post(
        f"{hub.url}/v1/people/me/totp", json={"password": TEST_PASSWORD}, headers=headers
    )
    secret: str = enrolment.json()["secret"]
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    code = credentials.hotp(key, credentials.totp_step(clock.time()))
    confirmed = httpx.post(
        f"{hub.url}/v1/people/me/totp/confirm", json={"code": code}, headers=headers
    )
    assert confirmed.status_code == 200, confirmed.text
    return secret


@contextmanager
def console_world(
    *, database_url: str, data_dir: Path, **settings: object
) -> Iterator[ConsoleWorld]:
    clock = ManualClock()
    with running_hub(database_url=database_url, data_dir=data_dir, clock=clock, **settings) as hub:
        with hub.admin() as admin:
            admin.import_catalogue(CATALOGUE)
            for username, (name, role) in PEOPLE.items():
                body = {"password": TEST_PASSWORD, "display_name": name, "roles": [role]}
                admin.call("PUT", f"/v1/admin/people/{username}", body)
        yield ConsoleWorld(hub=hub, clock=clock, totp_secret=_enrol_totp(hub, clock, STEWARD))


# A value for each path parameter of a console page (the redirect to sign-in comes
# before any lookup, so they need not exist). A new parameter fails the tests that
# visit every page signed out: add it.
PATH_VALUES = {
    "item_id": "person.residential-address",
    "request_id": "0" * 32,
    "grant_id": "0" * 32,
    "index": "0",
    "department_id": "civil-registry",
    "client_id": "tax-adapter",
    "username": STEWARD,
    "delivery_id": "0" * 32,
    "code": "en",
}
_CONSOLE = "onceonly.hub.console."
_NOT_PAGES = ("/assets/",)  # the stylesheet, scripts and icon: public, not pages


def console_page_paths() -> list[str]:
    """Every GET route of the console, as the app's router has them: the routes the
    app serves from the console's modules (onceonly.hub.console.*)."""
    found = []
    for context in iter_route_contexts(create_app().routes):
        route = context.route
        if not isinstance(route, APIRoute) or "GET" not in (context.methods or ()):
            continue
        if not route.endpoint.__module__.startswith(_CONSOLE):
            continue
        if context.path.startswith(_NOT_PAGES):
            continue
        path = context.path
        for name in re.findall(r"{(\w+)}", path):
            assert name in PATH_VALUES, f"give PATH_VALUES a value for {{{name}}} ({path})"
            path = path.replace("{" + name + "}", PATH_VALUES[name])
        found.append(path)
    return found
