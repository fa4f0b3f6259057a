"""Issue 13's whole story in a real browser (Debian's Chromium, Playwright), and its
refusals.

The story: the civil registry's steward registers a new item through ``/register``
(a pasted schema, checked, then registered); the tax board's steward asks for three of
its fields; the owner's steward approves two of them; the tax board's machine (its
adapter's HubClient, DPoP-bound) fetches a record through the hub from the civil
registry's adapter and gets those two fields; the auditor finds the access by the
person's identifier and sees its proof verified against the next signed checkpoint;
the citizen signs in with the citizens' OpenID provider (the identifier as a claim)
and sees the access with its proof status; the owner's steward revokes the grant and
the machine's next fetch is refused. axe-core reports no violation on every page the
story visits (with JavaScript and without: see ``browsing.Watched``), and no CSP report.

The refusals: a steward of the asking department, and one of a third department, have
no approve button and a forged approval (with a good CSRF token) is refused 403; a
form without its CSRF token is refused 403 and changes nothing; a signed-out browser
reaches no console page but a sign-in page (every GET route of the app's router).
"""

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from joserfc.jwk import ECKey
from playwright.sync_api import Browser

from onceonly.adapters import (
    AccessDenied,
    AdapterConfig,
    HubClient,
    RecordStore,
    StoreItem,
    create_provider_app,
    public_jwks,
)

from tests.hub.console.browsing import EMBEDDED, Visitor, pytestmark, visitor
from tests.hub.console.console_world import console_page_paths
from tests.hub.oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider, running_provider
from tests.hub_testing import (
    TEST_PASSWORD,
    RunningHub,
    module_database,
    running_hub,
    serve,
)

__all__ = ["pytestmark"]

OWNER, CONSUMER, THIRD = "civil-registry", "tax", "social-welfare"
OWNER_STEWARD, CONSUMER_STEWARD, THIRD_STEWARD, AUDITOR = "cecilia", "tomas", "sirje", "ivo"
PEOPLE = {
    OWNER_STEWARD: {"role": "steward", "department": OWNER},
    CONSUMER_STEWARD: {"role": "steward", "department": CONSUMER},
    THIRD_STEWARD: {"role": "steward", "department": THIRD},
    AUDITOR: {"role": "auditor"},
}
MACHINE = "tax-adapter"
PURPOSE = "tax-assessment"
PURPOSE_TITLE = "Assessing taxes"
CLAIM = "national_id"
TITLE = "Fishing licence"
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": TITLE,
    "type": "object",
    "properties": {
        "licence_number": {"type": "string", "title": "Licence number", "x-personal": True},
        "holder_name": {"type": "string", "title": "Holder's name", "x-personal": True},
        "valid_until": {"type": "string", "format": "date", "title": "Valid until"},
        "waters": {"type": "string", "title": "Waters where fishing is allowed"},
    },
    "required": ["licence_number", "valid_until"],
    "additionalProperties": False,
}
RECORD = {
    "licence_number": "FL-2026-0042",
    "holder_name": "Mari Maasikas",
    "valid_until": "2027-03-31",
    "waters": "Lake Peipus",
}
ASKED = ["licence_number", "valid_until", "waters"]
GRANTED = ["licence_number", "valid_until"]


@dataclass(frozen=True)
class Run:
    """What the story registers and asks about: its item and its person."""

    item: str
    subject: str


RUN = Run(item="person.fishing-licence", subject="49001080011")


@dataclass
class StoryWorld:
    hub: RunningHub
    machine_key: ECKey
    citizens: Provider

    @property
    def url(self) -> str:
        return self.hub.url

    def machine(self) -> HubClient:
        """The tax board's adapter's client (DPoP-bound tokens, as deployed)."""
        return HubClient(self.url, client_id=MACHINE, key=self.machine_key, retries=0)


@pytest.fixture(scope="module")
def citizens() -> Iterator[Provider]:
    with running_provider() as running:
        yield running


@pytest.fixture(scope="module", params=EMBEDDED)
def world(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    citizens: Provider,
) -> Iterator[StoryWorld]:
    """A hub with the starter catalogue, one person per role, the tax board's machine
    client, and the civil registry's adapter, which already serves the items the story
    will register (with a record of its person)."""
    tmp_path = tmp_path_factory.mktemp("story")
    settings = {
        # The same provider for staff (the story's people sign in with passwords; its
        # subject is linked to no account) and for citizens.
        "oidc_issuer": citizens.url,
        "oidc_client_id": CLIENT_ID,
        "oidc_client_secret": CLIENT_SECRET,
        "citizen_oidc_issuer": citizens.url,
        "citizen_oidc_client_id": CLIENT_ID,
        "citizen_oidc_client_secret": CLIENT_SECRET,
        "citizen_identifier_claim": CLAIM,
        "checkpoint_interval": 0.1,
    }
    database_url = module_database(request, tmp_path_factory, catalogued=True)
    with (
        running_hub(database_url=database_url, data_dir=tmp_path / "hub", **settings) as hub,
        hub.admin() as admin,
    ):
        for callback in ("/citizen/sign-in/callback", "/sign-in/oidc/callback"):
            citizens.redirect_uris.add(hub.settings.issuer + callback)
        for username, role in PEOPLE.items():
            body = {"password": TEST_PASSWORD, "roles": [role]}
            admin.call("PUT", f"/v1/admin/people/{username}", body)
        machine_key = ECKey.generate_key("P-256", auto_kid=True)
        admin.put_client(MACHINE, department=CONSUMER, jwks=public_jwks(machine_key))
        config = AdapterConfig(
            department=OWNER,
            hub_url=hub.url,
            data_dir=tmp_path / "owner",
            items={RUN.item: StoreItem()},
        )
        with RecordStore(config.store_path) as store:
            store.put(RUN.item, RUN.subject, RECORD, announce=False)
        with serve(create_provider_app(config)) as owner_url:
            admin.put_department(OWNER, name="Civil Registry Office", adapter_url=owner_url)
            yield StoryWorld(hub=hub, machine_key=machine_key, citizens=citizens)


class People:
    """A browser for each person of the story (and the citizen), each signed out and
    made at first use; closed at the end."""

    def __init__(self, browser: Browser, url: str) -> None:
        self._browser, self._url = browser, url
        self._made: dict[str, Visitor] = {}

    def __getitem__(self, name: str) -> Visitor:
        if name not in self._made:
            self._made[name] = visitor(self._browser, self._url)
        return self._made[name]

    def close(self) -> None:
        for each in self._made.values():
            each.context.close()


@pytest.fixture
def people(browser: Browser, world: StoryWorld) -> Iterator[People]:
    made = People(browser, world.url)
    yield made
    made.close()


def sign_in(person: Visitor, username: str) -> None:
    page = person.page
    page.goto("/sign-in")
    person.check()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url("**/catalogue")
    person.check()


def csrf_token_of(person: Visitor) -> str:
    token = person.page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    return token


def until_signed(person: Visitor, locator: str, words: str) -> str:
    """Reload until ``locator``'s text says ``words`` (the next signed checkpoint comes
    within checkpoint_interval); its text."""
    deadline = time.monotonic() + 15
    while True:
        text = person.page.locator(locator).inner_text()
        if words in text or time.monotonic() > deadline:
            return text
        person.page.wait_for_timeout(150)
        person.page.reload()


# --- the story ---------------------------------------------------------------------


def register_the_item(owner: Visitor, run: Run) -> None:
    """1. The owner's steward registers an item: paste the schema, check, register."""
    page = owner.page
    page.get_by_role("link", name="Register an item").click()
    page.wait_for_url("**/register")
    owner.check()
    page.get_by_label("Item id").fill(run.item)
    page.get_by_label("Title").fill(TITLE)
    page.get_by_label("Description").fill("A licence to fish in public waters.")
    page.get_by_label("Owner department").select_option(OWNER)
    page.get_by_label("Legal basis").fill("Fishing Act § 7")
    page.get_by_label("Tags (optional)").fill("person, licence")
    page.get_by_label("JSON Schema").fill(json.dumps(SCHEMA, indent=2))
    page.get_by_role("button", name="Check").click()
    page.locator("#verdict").wait_for()
    assert "The registry accepts this item" in page.locator("#verdict").inner_text()
    verdict = page.locator("#verdict-fields").inner_text()
    assert all(name in verdict for name in SCHEMA["properties"])  # type: ignore[attr-defined]
    owner.check()
    page.get_by_role("button", name="Register the item").click()
    # the item's page, with the registration's banner (or that opening it waits)
    page.wait_for_url(re.compile(rf".*/catalogue/{re.escape(run.item)}\?done=item-registered"))
    assert page.get_by_role("heading", name=TITLE).is_visible()
    owner.check()


def ask_for_three_fields(asker: Visitor, run: Run) -> str:
    """2. The tax board's steward asks for three of the four fields; the request's path."""
    page = asker.page
    page.goto("/catalogue")
    page.get_by_label("Search by text").fill("fishing")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/catalogue?q=fishing*")
    asker.check()
    page.locator(f'a[href="/catalogue/{run.item}"]').click()
    page.wait_for_url(f"**/catalogue/{run.item}")
    asker.check()
    page.get_by_role("link", name="Ask for access").click()
    page.wait_for_url(f"**/catalogue/{run.item}/request")
    asker.check()
    page.get_by_label("Purpose", exact=True).select_option(PURPOSE)
    page.get_by_label("Why your department needs it").fill("Checking a declared licence fee")
    page.get_by_label("Legal basis").fill("Taxation Act § 12")
    for name in ASKED:
        page.get_by_label(name).check()
    page.get_by_role("button", name="Send the request").click()
    page.wait_for_url(re.compile(r".*/requests/[0-9a-f]{32}\?done=request-sent$"))
    assert page.locator("#notice").is_visible()  # the success banner
    asker.check()
    return asker.path().split("?")[0]


def no_one_else_approves(world: StoryWorld, people: People, request_path: str) -> None:
    """Refusals: the asking department's steward sees the request without an approve
    button, and a forged approval (with a good CSRF token) gets 403; a third
    department's steward does not see the request at all (404, as the API hides another
    department's requests), nor can approve it; the owner's own approval without its
    CSRF token gets 403. The request still waits."""
    forged = {"field-0": GRANTED[0], "field-1": GRANTED[1]}
    for username, status in ((CONSUMER_STEWARD, 403), (THIRD_STEWARD, 404)):
        person = people[username]
        if username == THIRD_STEWARD:
            sign_in(person, username)
        page = person.page
        shown = page.goto(request_path)
        assert shown is not None
        assert shown.status == (200 if username == CONSUMER_STEWARD else 404)
        person.check()
        assert page.locator("#approve").count() == 0
        assert page.get_by_role("button", name="Approve the ticked fields").count() == 0
        answer = page.request.post(
            f"{request_path}/approve", form={"csrf_token": csrf_token_of(person), **forged}
        )
        assert answer.status == status, (username, answer.status)
    owner = people[OWNER_STEWARD]
    owner.page.goto(request_path)
    without_token = owner.page.request.post(f"{request_path}/approve", form=forged)
    assert without_token.status == 403
    assert "nothing" in without_token.text().lower()  # "nothing changed"
    owner.page.reload()
    assert "Waiting" in owner.page.locator("#status").inner_text()
    assert owner.page.locator("#approve").is_visible()


def approve_two(owner: Visitor, request_path: str) -> str:
    """3. The owner's steward approves two of the three fields; the grant's path."""
    page = owner.page
    page.goto("/inbox")
    owner.check()
    page.locator(f'a[href="{request_path}"]').click()
    page.wait_for_url(f"**{request_path}")
    owner.check()
    page.get_by_label("waters").uncheck()
    page.get_by_role("button", name="Approve the ticked fields").click()
    page.locator("#granted-fields").wait_for()
    titles = {name: SCHEMA["properties"][name]["title"] for name in GRANTED}  # type: ignore[index]
    shown = ", ".join(f"{titles[name]} ({name})" for name in GRANTED)
    assert page.locator("#granted-fields").inner_text() == shown
    owner.check()
    grant_path = page.locator("#grant-link").get_attribute("href")
    assert grant_path is not None
    return grant_path


def the_machine_fetches(world: StoryWorld, run: Run) -> None:
    """4. The tax board's machine fetches the person's record: the two fields only."""
    with world.machine() as machine:
        result = machine.fetch(run.item, run.subject, purpose=PURPOSE)
    assert result.record == {name: RECORD[name] for name in GRANTED}


def the_auditor_finds_it(auditor: Visitor, run: Run) -> None:
    """5. The auditor searches by the person's identifier, opens the access, and sees
    its proof verified against the signed checkpoint."""
    page = auditor.page
    page.get_by_role("link", name="Audit log").click()
    page.wait_for_url("**/audit")
    auditor.check()
    page.get_by_label("The person's identifier").fill(run.subject)
    page.get_by_label("Data item").fill(run.item)
    page.get_by_label("Action").fill("record.query")
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator("#results").wait_for()
    assert run.subject not in page.url
    assert page.locator("#results tbody tr").count() == 1
    assert CONSUMER in page.locator("#results tbody tr").inner_text()
    auditor.check()
    page.locator("#results a").first.click()
    page.wait_for_url("**/audit/entries/*")
    verdict = until_signed(auditor, "#proof-verdict", "Included in the log signed at")
    assert "Included in the log signed at" in verdict
    assert "✓" in verdict
    auditor.check()


def the_citizen_sees_it(world: StoryWorld, citizen: Visitor, run: Run) -> None:
    """6. The citizen signs in through the citizens' provider (the identifier as its
    claim) and sees the access, with its proof status."""
    world.citizens.behaviour.claims = {CLAIM: run.subject}
    page = citizen.page
    page.goto("/citizen")
    citizen.check()
    page.locator("#sign-in").click()
    page.locator("#summary").wait_for()  # the callback's page goes on to /citizen
    assert citizen.path() == "/citizen"
    row = until_signed(citizen, "#accesses tbody", "In the signed log")
    assert TITLE in row
    assert "Tax and Customs Board" in row
    assert PURPOSE_TITLE in row
    assert "In the signed log" in row
    assert run.subject not in page.content()
    assert MACHINE not in page.content()
    citizen.check()


def revoke(owner: Visitor, grant_path: str) -> None:
    """7. The owner's steward revokes the grant."""
    page = owner.page
    page.goto("/grants")
    owner.check()
    page.locator(f'a[href="{grant_path}"]').first.click()
    page.wait_for_url(f"**{grant_path}")
    owner.check()
    page.get_by_label("Reason for revoking").fill("The tax audit ended")
    page.get_by_role("button", name="Revoke the grant").click()
    page.wait_for_url(f"**{grant_path}/revoke")  # asked first, the reason shown
    assert page.locator("#reason-given").inner_text() == "The tax audit ended"
    owner.check()
    page.get_by_role("button", name="Yes, revoke the grant").click()
    page.wait_for_url(f"**{grant_path}?done=revoked")
    assert "Revoked" in page.locator("#status").inner_text()
    owner.check()


def test_the_story_from_registration_to_revocation(world: StoryWorld, people: People) -> None:
    run = RUN
    owner, asker = people[OWNER_STEWARD], people[CONSUMER_STEWARD]
    sign_in(owner, OWNER_STEWARD)
    register_the_item(owner, run)
    sign_in(asker, CONSUMER_STEWARD)
    request_path = ask_for_three_fields(asker, run)
    no_one_else_approves(world, people, request_path)
    grant_path = approve_two(owner, request_path)
    the_machine_fetches(world, run)
    sign_in(people[AUDITOR], AUDITOR)
    the_auditor_finds_it(people[AUDITOR], run)
    the_citizen_sees_it(world, people["citizen"], run)
    revoke(owner, grant_path)
    with world.machine() as machine, pytest.raises(AccessDenied):
        machine.fetch(run.item, run.subject, purpose=PURPOSE)


# --- a signed-out browser ------------------------------------------------------------


# Where a signed-out visitor lands: a staff page's sign-in page, the sign-in page the
# provider's callback answers ("not linked"), and the citizen's way in. Every GET route,
# signed out, is walked over HTTP on both databases (test_citizen_pages.py); the
# browser checks each page it lands on.
LANDINGS = {
    "/inbox": "/sign-in",
    "/sign-in/oidc": "/sign-in/oidc/callback",
    "/citizen": "the citizen's sign-in",
}


def test_a_signed_out_browser_reaches_no_page_but_sign_in(
    world: StoryWorld,
    browser: Browser,
) -> None:
    paths = console_page_paths()
    assert {"/inbox", "/register", "/audit", "/admin/people", "/citizen"} <= set(paths)
    assert set(LANDINGS) <= set(paths)
    nobody = visitor(browser, world.url)
    try:
        for path, landing in LANDINGS.items():
            assert _lands_at(nobody, path) == landing, path
            nobody.check()
        cookies = nobody.context.cookies()
        assert all(cookie["name"] != "onceonly-console" for cookie in cookies)
    finally:
        nobody.context.close()


def _lands_at(nobody: Visitor, path: str) -> str:
    page = nobody.page
    page.goto(path)
    if path.startswith("/citizen"):
        # The citizen's page, signed out, is its sign-in page: only the way in.
        assert page.locator("#sign-in").get_attribute("href") == "/citizen/sign-in"
        assert page.locator("#accesses").count() == 0
        return "the citizen's sign-in"
    # The sign-in page; /sign-in/oidc comes back from the provider to its callback,
    # which answers with the sign-in page ("not linked").
    assert page.get_by_role("heading", name="Sign in", exact=True).is_visible(), path
    assert page.get_by_label("Password").is_visible(), path
    return nobody.path().split("?")[0]
