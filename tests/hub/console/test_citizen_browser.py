"""The citizen's "who used my data" pages in a real browser (Debian's Chromium,
Playwright): signed out, signed in through
the citizens' OpenID provider (a loopback provider, the person's identifier as a claim)
with an access listed and its proof verified, with no access, a refused sign-in, and
signed out again. axe-core reports no violation on every page (with JavaScript and
without: see ``browsing.Watched``), and no CSP report or failed load."""

import itertools
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from tests.hub.console.browsing import EMBEDDED, Visitor, pytestmark, visitor
from tests.hub.exchange_world import ADDRESS, ADDRESS_RECORD, PURPOSE, World, module_exchange_world
from tests.hub.oidc_provider import CLIENT_ID, CLIENT_SECRET, Behaviour, Provider, running_provider

__all__ = ["pytestmark"]

CLAIM = "national_id"
_PEOPLE = itertools.count(1)


@pytest.fixture(scope="module")
def citizens() -> Iterator[Provider]:
    with running_provider() as running:
        yield running


@pytest.fixture(scope="module", params=EMBEDDED)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, citizens: Provider
) -> Iterator[World]:
    settings = {
        "citizen_oidc_issuer": citizens.url,
        "citizen_oidc_client_id": CLIENT_ID,
        "citizen_oidc_client_secret": CLIENT_SECRET,
        "citizen_identifier_claim": CLAIM,
        "checkpoint_interval": 0.1,
    }
    with module_exchange_world(request, tmp_path_factory, **settings) as built:
        citizens.redirect_uris.add(f"{built.hub.settings.issuer}/citizen/sign-in/callback")
        yield built


@pytest.fixture
def citizen(browser: Browser, world: World, citizens: Provider) -> Iterator[Visitor]:
    citizens.behaviour = Behaviour()
    made = visitor(browser, world.hub.url)
    yield made
    made.context.close()


def person(world: World) -> str:
    """The personal code of someone no other test asks about, with an address on record."""
    code = f"4900109{next(_PEOPLE):04d}"
    world.owner_store.put(ADDRESS, code, ADDRESS_RECORD, announce=False)
    return code


def sign_in(citizen: Visitor, citizens: Provider, identifier: str) -> None:
    """From the signed-out page, through the provider, back to /citizen."""
    citizens.behaviour.claims = {CLAIM: identifier}
    page = citizen.page
    page.goto("/citizen")
    assert page.get_by_role("heading", name="Who used my data").is_visible()
    citizen.check()
    page.get_by_role("button", name="Sign in with 127.0.0.1").click()
    page.locator("#summary").wait_for()  # the callback's page goes on to /citizen
    assert citizen.path() == "/citizen"


def test_a_citizen_sees_an_access_with_its_proof_then_signs_out(
    world: World, citizens: Provider, citizen: Visitor
) -> None:
    subject = person(world)
    with world.client() as machine:
        machine.fetch(ADDRESS, subject, purpose=PURPOSE)
    sign_in(citizen, citizens, subject)
    page = citizen.page
    deadline = time.monotonic() + 15  # the next signed checkpoint
    while "In the signed log" not in page.locator("#accesses").inner_text():
        assert time.monotonic() < deadline, page.locator("#accesses").inner_text()
        page.wait_for_timeout(150)
        page.reload()
    rows = page.locator("#accesses tbody tr")
    assert rows.count() == 1
    row = rows.inner_text()
    assert "Residential address" in row
    assert "Deciding eligibility for a social benefit" in row
    assert "Checked against the log signed at" in row
    assert subject not in page.content()
    citizen.check()
    page.get_by_text("What the proof means").click()  # a <details>: opens without script
    assert page.get_by_text("cannot be changed or removed without").is_visible()
    citizen.check()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/citizen?signed_out=1")
    assert page.get_by_text("You have signed out.").is_visible()
    assert page.locator("#accesses").count() == 0
    citizen.check()


def test_a_citizen_without_accesses_is_told_so(
    world: World, citizens: Provider, citizen: Visitor
) -> None:
    sign_in(citizen, citizens, person(world))
    summary = citizen.page.locator("#summary").inner_text()
    assert summary == "No department has read your records through the exchange."
    citizen.check()


def test_a_refused_sign_in_is_the_sign_in_page_with_its_error(
    world: World, citizens: Provider, citizen: Visitor
) -> None:
    citizens.behaviour = Behaviour(lifetime=-600, claims={CLAIM: person(world)})
    page = citizen.page
    page.goto("/citizen")
    page.get_by_role("button", name="Sign in with 127.0.0.1").click()
    page.wait_for_url("**/citizen/sign-in/callback?*")
    assert "could not be checked" in page.locator("main").inner_text()
    assert page.locator("#accesses").count() == 0
    citizen.check()
