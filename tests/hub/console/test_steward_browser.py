"""The stewards' pages in a real browser (Debian's Chromium through Playwright): a
steward of another department asks for three fields of an item, the owner's steward
approves two of them with the keyboard alone, then revokes the grant. Every page they
pass is checked by axe-core (zero WCAG 2.2 A/AA violations, with JavaScript and
without), and the browser's console for CSP reports (test_console_browser.py)."""

import re

from playwright.sync_api import Browser, Page

from tests.hub.console.browsing import check_fits_windows, check_landmarks
from tests.hub.console.console_world import OTHER_STEWARD, STEWARD, ConsoleWorld
from tests.hub.console.test_console_browser import (  # noqa: F401 (fixtures)
    Browsing,
    Watched,
    browsing,
    pytestmark,
    world,
)
from tests.hub.console.test_steward_pages import ask
from tests.hub_testing import TEST_PASSWORD

ITEM = "person.residential-address"
GRANTED = "City or settlement (city), Street address (street)"  # titles, names beside them


def _sign_in(watched: Watched, username: str, code: str = "") -> None:
    page = watched.page
    page.goto("/sign-in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_label("One-time code").fill(code)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/catalogue")


def _ask(watched: Watched, purpose: str) -> str:
    """The other department's steward asks for three fields; the request's path."""
    page = watched.page
    page.goto(f"/catalogue/{ITEM}")
    page.get_by_role("link", name="Ask for access").click()
    page.wait_for_url(f"**/catalogue/{ITEM}/request")
    watched.check()
    page.get_by_role("button", name="Send the request").click()  # empty: errors
    assert page.locator(".govuk-error-summary").is_visible()
    watched.check()
    page.get_by_label("Purpose", exact=True).select_option(purpose)
    page.get_by_label("Why your department needs it").fill("Checking a tax return's address")
    page.get_by_label("Legal basis").fill("Taxation Act § 12")
    for name in ("street", "city", "postal_code"):
        page.get_by_label(name).check()
    page.get_by_role("button", name="Send the request").click()
    page.wait_for_url(re.compile(r".*/requests/[0-9a-f]{32}\?done=request-sent$"))
    watched.check()
    made = _path(page).split("?")[0]
    for path in ("/outbox", "/grants"):
        page.goto(path)
        watched.check()
    return made


def _path(page: Page) -> str:
    return "/" + page.url.split("/", 3)[3]


def test_a_request_approved_for_two_fields_then_the_grant_revoked(
    browsing: Browsing,  # noqa: F811 (the fixture, imported above)
    world: ConsoleWorld,  # noqa: F811
) -> None:
    asker = browsing.page()
    _sign_in(asker, OTHER_STEWARD)
    request_path = _ask(asker, "tax-assessment")
    asker.page.get_by_role("button", name="Sign out").click()
    owner = browsing.page()
    _sign_in(owner, STEWARD, world.next_code())
    page = owner.page
    page.goto("/inbox")
    owner.check()
    page.goto(request_path)
    owner.check()
    page.get_by_label("postal_code").uncheck()
    page.get_by_role("button", name="Approve the ticked fields").click()
    page.wait_for_url(f"**{request_path}?done=approved")
    assert page.locator("#notice").is_visible()  # the success banner
    assert page.locator("#granted-fields").inner_text() == GRANTED
    owner.check()
    page.locator("#grant-link").click()
    owner.check()
    page.get_by_label("Reason for revoking").fill("The purpose ended")
    page.get_by_role("button", name="Revoke the grant").click()
    page.wait_for_url("**/revoke")  # asked first, nothing changed yet
    owner.check()
    page.get_by_role("button", name="Yes, revoke the grant").click()
    page.wait_for_url("**?done=revoked")
    assert "Revoked" in page.locator("#status").inner_text()
    owner.check()
    for path in ("/register", f"/catalogue/{ITEM}/versions/new", f"/catalogue/{ITEM}/lifecycle"):
        page.goto(path)
        owner.check()
    for button, action in (("Deprecate the item", "deprecate"), ("Retire the item", "retire")):
        page.goto(f"/catalogue/{ITEM}/lifecycle")
        page.get_by_role("button", name=button).click()
        page.wait_for_url(f"**/{action}")  # the question: nothing changes before its "Yes"
        owner.check()


def test_an_approval_with_the_keyboard_alone(
    browser: Browser,
    world: ConsoleWorld,  # noqa: F811
) -> None:
    context = browser.new_context(base_url=world.url)
    try:
        asker = Watched(context.new_page())
        _sign_in(asker, OTHER_STEWARD)
        request_path = _ask(asker, "debt-collection")
        asker.page.get_by_role("button", name="Sign out").click()
        owner = Watched(context.new_page())
        _sign_in(owner, STEWARD, world.next_code())
        page = owner.page
        page.goto(request_path)
        # Tab to the first field's checkbox, untick "postal_code" with Space, approve.
        focused = ""
        for _ in range(60):
            page.keyboard.press("Tab")
            focused = page.evaluate("document.activeElement.value || ''")
            if focused == "postal_code":
                break
        assert focused == "postal_code"
        page.keyboard.press("Space")
        for _ in range(10):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "approve":
                break
        assert page.evaluate("document.activeElement.id") == "approve"
        page.keyboard.press("Enter")
        page.wait_for_selector("#granted-fields")
        assert page.locator("#granted-fields").inner_text() == GRANTED
        owner.check()
    finally:
        context.close()


def test_the_stewards_pages_fit_a_laptop_and_a_phone_their_tables_scrolling_alone(
    browsing: Browsing,  # noqa: F811
    world: ConsoleWorld,  # noqa: F811
) -> None:
    with world.signed_in(OTHER_STEWARD) as tomas:
        request_id = ask(tomas, "person.identity", ["given_name"], "benefit-eligibility")
    owner = browsing.page()
    _sign_in(owner, STEWARD, world.next_code())
    for path in ("/catalogue", f"/catalogue/{ITEM}", "/inbox", "/outbox", "/grants"):
        owner.page.goto(path)
        check_fits_windows(owner)
        check_landmarks(owner)
    owner.page.goto(f"/requests/{request_id}")
    check_fits_windows(owner)


def test_a_checked_register_form_lists_every_mistake_and_stays_accessible(
    browsing: Browsing,  # noqa: F811
    world: ConsoleWorld,  # noqa: F811
) -> None:
    owner = browsing.page()
    _sign_in(owner, STEWARD, world.next_code())
    page = owner.page
    page.goto("/register")
    page.get_by_label("Item id").fill("person.Näme")
    page.get_by_label("JSON Schema").fill('{"type": "object" "properties": {}}')
    page.get_by_role("button", name="Check", exact=True).click()
    summary = page.locator(".govuk-error-summary")
    summary.wait_for()
    links = summary.locator("a")
    assert [links.nth(i).get_attribute("href") for i in range(links.count())] == [
        "#id",
        "#title",
        "#legal_basis",
        "#schema",
    ]
    assert "at line 1, column 19" in page.locator("#schema-error").inner_text()
    owner.check()
