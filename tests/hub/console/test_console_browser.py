"""The console in a real browser: Debian's Chromium driven by Playwright (never
Playwright's own browser download), on the embedded database (decision 0033).

Every page is checked by axe-core (vendored in ``axe/``, injected by the test, never
served by the hub) for WCAG 2.2 A and AA violations, with JavaScript and without
(``browsing.Watched``), and the browser's console for Content-Security-Policy reports.
"""

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from tests.hub.console.browsing import EMBEDDED, Browsing, Watched, pytestmark
from tests.hub.console.console_world import (
    AUDITOR,
    OTHER_STEWARD,
    STEWARD,
    ConsoleWorld,
    console_world,
)
from tests.hub_testing import TEST_PASSWORD, module_database

__all__ = ["Browsing", "Watched", "pytestmark"]  # imported by other modules
ITEM = "person.residential-address"


@pytest.fixture(scope="module", params=EMBEDDED)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleWorld]:
    with console_world(
        database_url=module_database(request, tmp_path_factory),
        data_dir=tmp_path_factory.mktemp("hub"),
    ) as built:
        yield built


@pytest.fixture
def browsing(browser: Browser, world: ConsoleWorld) -> Iterator[Browsing]:
    made = browser.new_context(base_url=world.url)
    made.set_default_timeout(10_000)
    yield Browsing(context=made)
    made.close()


def _sign_in(watched: Watched, world: ConsoleWorld, username: str, *, code: str = "") -> None:
    page = watched.page
    page.goto("/catalogue")
    assert page.url.endswith("/sign-in")
    watched.check()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_label("One-time code").fill(code)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/catalogue")


def test_sign_in_with_a_code_then_search_filter_and_open_an_item(
    browsing: Browsing, world: ConsoleWorld
) -> None:
    watched = browsing.page()
    page = watched.page
    _sign_in(watched, world, STEWARD, code=world.next_code())
    watched.check()
    page.get_by_label("Search by text").fill("address")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/catalogue?q=address*")
    watched.check()
    page.get_by_label("Owner department").select_option("civil-registry")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**owner=civil-registry*")
    page.get_by_role("link", name="Residential address").click()
    page.wait_for_url(f"**/catalogue/{ITEM}")
    watched.check()
    fields = page.locator("#fields tbody tr")
    street = fields.filter(has=page.locator("th", has_text="street"))
    assert street.locator(".govuk-tag").inner_text() == "Personal"
    assert page.locator("#owned").is_visible()
    assert page.locator("#compatibility").inner_text() == "BACKWARD"
    page.goto("/account")
    watched.check()


def test_sign_out_and_a_page_after_it(browsing: Browsing, world: ConsoleWorld) -> None:
    watched = browsing.page()
    page = watched.page
    _sign_in(watched, world, AUDITOR)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/sign-in?signed_out=1")
    assert page.get_by_text("You have signed out.").is_visible()
    watched.check()
    page.goto(f"/catalogue/{ITEM}")
    assert "/sign-in" in page.url


def test_a_session_that_ended_sends_the_browser_back_to_sign_in(
    browsing: Browsing, world: ConsoleWorld
) -> None:
    watched = browsing.page()
    _sign_in(watched, world, AUDITOR)
    world.clock.advance(world.hub.settings.session_lifetime + 1)
    watched.page.goto("/catalogue")
    assert watched.page.url.endswith("/sign-in")
    assert watched.page.get_by_text("Your sign-in has ended").is_visible()
    watched.check()


def test_a_form_sent_after_the_sign_in_ended_says_so_and_comes_back_to_its_page(
    browsing: Browsing, world: ConsoleWorld
) -> None:
    """The browser still holds the cookie when the hub ends the session (it keeps it
    longer), so the hub can tell an ended sign-in apart; signing in again brings the
    person back to the form's page, not to the catalogue."""
    watched = browsing.page()
    page = watched.page
    _sign_in(watched, world, OTHER_STEWARD)
    lifetime = world.hub.settings.session_lifetime
    (session,) = [c for c in browsing.context.cookies() if c["name"] == "onceonly-console"]
    assert session["expires"] > time.time() + lifetime + 3600  # outlives the hub's session
    form_page = f"/catalogue/{ITEM}/request"
    page.goto(form_page)
    page.get_by_label("Why your department needs it").fill("Checking an address")
    world.clock.advance(lifetime + 1)
    page.get_by_role("button", name="Send the request").click()
    page.wait_for_url("**/sign-in?*")
    assert page.get_by_text("Your sign-in has ended").is_visible()
    assert page.locator("#unsent-form").is_visible()  # nothing was changed, fill it again
    watched.check()
    page.get_by_label("Username").fill(OTHER_STEWARD)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{form_page}")
    page.reload()  # a page reloaded after the sign-in ended says so too
    world.clock.advance(lifetime + 1)
    page.reload()
    page.wait_for_url("**/sign-in?next=*")
    assert page.get_by_text("Your sign-in has ended").is_visible()


def test_a_mistyped_address_and_a_form_address_opened_as_a_page_are_pages(
    browsing: Browsing, world: ConsoleWorld
) -> None:
    watched = browsing.page()
    page = watched.page
    _sign_in(watched, world, AUDITOR)
    for path, status, heading in (
        (f"/catalogue/{ITEM}/x", 404, "Page not found"),
        ("/sign-out", 405, "This page cannot be opened this way"),
    ):
        answer = page.goto(path)
        assert answer is not None
        assert answer.status == status
        assert page.get_by_role("heading", level=1).inner_text() == heading
        watched.check()


def test_a_forged_post_from_the_page_is_refused(browsing: Browsing, world: ConsoleWorld) -> None:
    watched = browsing.page()
    page = watched.page
    _sign_in(watched, world, AUDITOR)
    answer = page.request.post("/sign-out", form={"csrf_token": "forged"})
    assert answer.status == 403
    page.goto("/account")
    assert page.url.endswith("/account")  # still signed in: nothing changed


def test_the_form_error_summary_and_the_switch_to_chinese(
    browsing: Browsing, world: ConsoleWorld
) -> None:
    watched = browsing.page()
    page = watched.page
    page.goto("/sign-in")
    page.get_by_role("button", name="Sign in").click()
    assert page.locator(".govuk-error-summary").is_visible()
    assert page.title().startswith("Error: Sign in")
    watched.check()
    page.get_by_role("link", name="简体中文").click()
    page.wait_for_url("**/sign-in")
    assert page.locator("html").get_attribute("lang") == "zh-Hans"
    assert page.get_by_role("heading", name="登录").is_visible()
    watched.check()
    page.get_by_role("link", name="English").click()
    assert page.locator("html").get_attribute("lang") == "en"


def test_signing_in_with_the_keyboard_alone(browser: Browser, world: ConsoleWorld) -> None:
    context = browser.new_context(base_url=world.url)
    try:
        watched = Watched(context.new_page())
        page = watched.page
        page.goto("/sign-in")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
        page.keyboard.press("Enter")
        order = []
        for _ in range(12):
            page.keyboard.press("Tab")
            order.append(
                page.evaluate("document.activeElement.id || document.activeElement.textContent")
            )
            if order[-1] == "username":
                break
        assert order[-1] == "username", order
        page.keyboard.type(AUDITOR)
        page.keyboard.press("Tab")
        page.keyboard.type(TEST_PASSWORD)
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "code"
        page.keyboard.press("Enter")  # submits the form
        page.wait_for_url("**/catalogue")
        watched.check()
    finally:
        context.close()
