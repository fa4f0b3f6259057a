"""The administrators' pages in Debian's Chromium (Playwright): every page checked by
axe-core (WCAG 2.2 A and AA: no violation, with JavaScript and without), with no CSP
report or failed load; a client disabled through its confirmation page, a
form answered with its error summary, a person added."""

from tests.hub.console.browsing import check_fits_windows, check_landmarks
from tests.hub.console.console_world import ADMINISTRATOR, ConsoleWorld
from tests.hub.console.test_console_browser import (  # the world and checks
    Browsing,
    _sign_in,
    browsing,
    pytestmark,
    world,
)

__all__ = ["browsing", "pytestmark", "world"]

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
TABLES = [  # the pages with tables, which may be wider than a phone
    "/admin/departments",
    "/admin/departments/civil-registry",
    "/admin/clients",
    "/admin/people",
    "/admin/dead-letters",
    "/admin/signing-keys",
]
JWK = {
    "kty": "EC",
    "crv": "P-256",
    "kid": "k1",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
}


def test_every_administrators_page_has_no_accessibility_violation(
    world: ConsoleWorld, browsing: Browsing
) -> None:
    watched = browsing.page()
    _sign_in(watched, world, ADMINISTRATOR)
    for path in PAGES:
        answer = watched.page.goto(path)
        assert answer is not None
        assert answer.status == 200, path
        if path in TABLES:  # a laptop's window and a phone's: the tables scroll alone
            check_fits_windows(watched)
        else:
            watched.check()
        check_landmarks(watched)  # "Signed in as" and "Sign out" too


def test_an_administrator_disables_a_client_through_its_confirmation_page(
    world: ConsoleWorld, browsing: Browsing
) -> None:
    client_id = "tax-browser"
    with world.hub.admin() as admin:
        body = {"department": "tax", "jwks": {"keys": [JWK]}}
        admin.call("PUT", f"/v1/admin/clients/{client_id}", body)
    watched = browsing.page()
    page = watched.page
    _sign_in(watched, world, ADMINISTRATOR)
    page.goto("/admin/clients")
    page.get_by_role("link", name=client_id).click()
    page.get_by_role("button", name="Disable the client").click()
    page.wait_for_url(f"**/admin/clients/{client_id}/disable")
    watched.check()
    page.get_by_role("button", name="Yes, disable the client").click()
    page.wait_for_url(f"**/admin/clients/{client_id}?done=client-disabled")
    assert page.locator("#status").inner_text() == "Disabled"
    watched.check()


def test_a_form_with_errors_is_answered_with_its_summary_and_a_person_is_added(
    world: ConsoleWorld, browsing: Browsing
) -> None:
    username = "kaja"
    watched = browsing.page()
    page = watched.page
    _sign_in(watched, world, ADMINISTRATOR)
    page.goto("/admin/new-person")
    page.get_by_role("button", name="Save the account").click()
    summary = page.locator(".govuk-error-summary")
    summary.wait_for()
    assert "Enter a username" in summary.inner_text()
    assert page.title().startswith("Error:")
    watched.check()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Name", exact=True).fill("Kaja Kuusk")
    page.get_by_label("Auditor: reads the audit log, requests and grants").check()
    page.get_by_label("Password", exact=True).fill("a long and unguessable phrase")
    page.get_by_role("button", name="Save the account").click()
    page.wait_for_url(f"**/admin/people/{username}?done=person-saved")
    assert "Auditor" in page.locator("#roles").inner_text()
    watched.check()
