"""The auditors' pages in a real browser (Debian's Chromium, Playwright): the auditor
finds an access by the person's identifier and sees its proof verified; every page
(search, results, entry, checkpoints, dashboard) has no axe-core violation (with
JavaScript and without), no CSP report and no inline script."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests.hub.console.browsing import EMBEDDED, check_fits_windows
from tests.hub.console.test_auditor_pages import AUDITOR, PEOPLE
from tests.hub.console.test_console_browser import (  # noqa: F401 (fixtures)
    Browsing,
    Watched,
    pytestmark,
)
from tests.hub.exchange_world import (
    ADDRESS,
    CONSUMER,
    OWNER,
    PURPOSE,
    SUBJECT,
    World,
    module_exchange_world,
)
from tests.hub_testing import TEST_PASSWORD


@pytest.fixture(scope="module", params=EMBEDDED)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with module_exchange_world(request, tmp_path_factory, checkpoint_interval=0.05) as built:
        with built.hub.admin() as admin:
            for username, role in PEOPLE.items():
                body = {"password": TEST_PASSWORD, "roles": [role]}
                admin.call("PUT", f"/v1/admin/people/{username}", body)
        with built.client() as client:
            client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
        yield built


@pytest.fixture
def browsing(browser: Browser, world: World) -> Iterator[Browsing]:
    made = browser.new_context(base_url=world.hub.url)
    made.set_default_timeout(10_000)
    yield Browsing(context=made)
    made.close()


def _sign_in(page: Page) -> None:
    page.goto("/sign-in")
    page.get_by_label("Username").fill(AUDITOR)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/catalogue")


def test_the_auditor_finds_an_access_by_the_persons_identifier_and_sees_its_proof_verified(
    browsing: Browsing,
) -> None:
    watched = browsing.page()
    page = watched.page
    _sign_in(page)
    page.get_by_role("link", name="Audit log").click()
    page.wait_for_url("**/audit")
    watched.check()
    page.get_by_label("The person's identifier").fill(SUBJECT)
    page.get_by_label("Action").fill("record.query")
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_load_state()
    assert SUBJECT not in page.url
    watched.check()
    page.locator("#results a").first.click()
    page.wait_for_url("**/audit/entries/*")
    for _ in range(50):  # the checkpoint comes within checkpoint_interval
        if "Included in the log signed at" in page.locator("#proof-verdict").inner_text():
            break
        page.wait_for_timeout(100)
        page.reload()
    verdict = page.locator("#proof-verdict").inner_text()
    assert "Included in the log signed at" in verdict
    assert "✓" in verdict
    watched.check()
    page.get_by_role("link", name="Checkpoint history").click()
    page.wait_for_url("**/checkpoints")
    assert page.locator("#checkpoints .govuk-tag").first.inner_text() == "Verified"
    watched.check()
    page.get_by_role("link", name="Efficiency").click()
    page.wait_for_url("**/efficiency")
    assert page.locator("#totals").is_visible()
    watched.check()
    page.goto("/efficiency?period=2026")
    watched.check()


def test_the_browsers_back_and_the_entry_pages_back_link_return_to_the_results(
    browsing: Browsing,
) -> None:
    """The search is posted once and its results are a GET (post/redirect/get, the
    search sealed in a cookie): going back asks for no form to be sent again."""
    watched = browsing.page()
    page = watched.page
    _sign_in(page)
    page.goto("/audit")
    page.get_by_label("The person's identifier").fill(SUBJECT)
    page.get_by_label("Action").fill("record.query")  # not the searches, each an entry too
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_url("**/audit?results=1")
    assert SUBJECT not in page.url
    shown = page.locator("#results tbody tr").count()
    assert shown > 0
    watched.check()
    page.locator("#results a").first.click()
    page.wait_for_url("**/audit/entries/*")
    page.go_back()  # Chromium's Back: a GET, no "Confirm Form Resubmission"
    page.wait_for_url("**/audit?results=1")
    assert page.locator("#results tbody tr").count() == shown
    assert page.get_by_label("The person's identifier").input_value() == SUBJECT
    page.locator("#results a").first.click()
    page.wait_for_url("**/audit/entries/*")
    page.get_by_role("link", name="Back to the search results").click()
    page.wait_for_url("**/audit?results=1")
    assert page.locator("#results tbody tr").count() == shown


def test_the_results_and_checkpoints_fit_a_laptop_and_a_phone_their_tables_scrolling_alone(
    browsing: Browsing,
) -> None:
    watched = browsing.page()
    page = watched.page
    _sign_in(page)
    page.goto("/audit")
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_url("**/audit?results=1")
    check_fits_windows(watched)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/checkpoints")
    check_fits_windows(watched)


# Each chart label's left edge, in the chart's own units (a label drawn from x < 0 has
# lost its first letters off the chart's left edge).
_LABEL_LEFTS = """() => [...document.querySelectorAll('svg.app-chart text[text-anchor=end]')]
    .map(text => [text.textContent, text.getBBox().x])"""


def test_the_dashboard_fits_a_laptop_and_a_phone_and_no_chart_label_is_clipped(
    browsing: Browsing, world: World
) -> None:
    long_name = "Centre of Registers (Commercial and Land) of the Republic"
    names = {OWNER: long_name, CONSUMER: "国家社会福利与养老保险管理中心（地方分局）"}  # noqa: RUF001
    with world.hub.admin() as admin:
        for department, name in names.items():
            found = admin.call("GET", f"/v1/admin/departments/{department}")
            body = {"name": name, "description": found["description"]}
            admin.call(
                "PUT",
                f"/v1/admin/departments/{department}",
                body | {"adapter_url": found["adapter_url"]},
            )
    watched = browsing.page()
    page = watched.page
    _sign_in(page)
    for language in ("en", "zh-Hans"):
        page.goto(f"/language/{language}?next=/efficiency")
        page.wait_for_url("**/efficiency")
        assert page.locator("#owners").count() == 1
        check_fits_windows(watched)
        labels = page.evaluate(_LABEL_LEFTS)
        assert labels, "the charts have no labels"
        assert [label for label in labels if label[1] < 0] == []
    full = page.locator("svg.app-chart title", has_text=long_name)
    assert full.count() >= 1  # the whole name, where the label is shortened
