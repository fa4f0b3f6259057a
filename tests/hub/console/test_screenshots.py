"""Every console page a person can see, in English and in Simplified Chinese, in Debian's
Chromium (Playwright), with the demo's data: the demo's story played against a hub
(``onceonly.hub.cli.demo.play``: the catalogue, three departments, five people, requests
approved, exchanges, a refusal, a revocation, the audit log signed), then two requests
left waiting, so that an inbox and an outbox have something to decide.

Each page is checked: it answers 200, its ``<h1>`` is the one of its language (the
source string through the console's own catalogue, or the data it names, which is not
translated), ``<html lang>`` is the language, no CSP report, failed load or inline
script, and axe-core finds no WCAG 2.2 A or AA violation with its scripts run
(``Watched.check``, as in test_console_browser.py) on the Chinese page. The English page
has the same elements, data and styles, only its words differ: the flows' browser tests
check the English pages with axe-core, with scripts and without.

With ``ONCEONLY_SCREENSHOTS=1`` each page is also photographed, 960 px wide, its first
1000 px (the request's 1500), into ``docs/console/<page>.<language>.png`` (the pictures
the README and docs/console.md show; a CJK font must be installed then, see
docs/console.md "Screenshots"). Otherwise only the first page of each person is, into a
temporary folder: enough to keep the photographing working, without paying for
pictures nobody looks at.
"""

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from onceonly.hub.cli import demo
from onceonly.hub.console.language import translations

from tests.hub.console.test_console_browser import Watched, pytestmark
from tests.hub.oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider, running_provider
from tests.hub_testing import TEST_PASSWORD, RunningHub, module_database, running_hub

__all__ = ["pytestmark"]  # the browser tests' marks, this module's too

DOCS = Path(__file__).resolve().parents[3] / "docs" / "console"
WRITE = os.environ.get("ONCEONLY_SCREENSHOTS") == "1"
VIEWPORT = {"width": 960, "height": 720}
TALLEST = 1000  # px: a longer page is photographed down to there (the pictures stay small)
LANGUAGES = ["en", "zh-Hans"]
CLAIM = "national_id"
ITEM, INCOME = demo.ADDRESS, demo.INCOME
STEWARD, AUDITOR, ADMINISTRATOR = "cecilia", "aurora", "ada"
CJK = re.compile(r"[\u4e00-\u9fff]")


@dataclass
class DemoWorld:
    hub: RunningHub
    citizen_provider: Provider
    subject: str  # the citizen whose data the story used
    waiting: str  # a request to the civil registry, waiting for its steward
    grant: str  # the civil registry's grant to social welfare (revoked in the story)

    @property
    def url(self) -> str:
        return self.hub.url


@pytest.fixture(scope="module", params=["sqlite"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoWorld]:
    with running_provider() as provider, ExitStack() as stack:
        settings = {
            "citizen_oidc_issuer": provider.url,
            "citizen_oidc_client_id": CLIENT_ID,
            "citizen_oidc_client_secret": CLIENT_SECRET,
            "citizen_identifier_claim": CLAIM,
            "checkpoint_interval": 0.2,
        }
        hub = stack.enter_context(
            running_hub(
                database_url=module_database(request, tmp_path_factory),
                data_dir=tmp_path_factory.mktemp("hub"),
                **settings,
            )
        )
        provider.redirect_uris.add(f"{hub.settings.issuer}/citizen/sign-in/callback")
        root = tmp_path_factory.mktemp("departments")
        departments = {
            name: demo.start_department(stack, department=name, hub_url=hub.url, root=root)
            for name in demo.DEPARTMENT_ITEMS
        }
        told = StringIO()
        story = demo.Story(told)
        demo.play(story, hub_url=hub.url, admin_token=hub.keys.admin_token, departments=departments)
        assert story.failures == [], told.getvalue()
        yield DemoWorld(hub=hub, citizen_provider=provider, **_more_of_a_week(hub))


def _more_of_a_week(hub: RunningHub) -> dict[str, str]:
    """Known passwords for the demo's people (its own are never shown); a request to the
    civil registry and one from it, both waiting; the story's citizen and grant."""
    with hub.admin() as admin:
        for username, (name, role, department) in demo.PEOPLE.items():
            roles = [{"role": role, "department": department}] if department else [{"role": role}]
            body = {"display_name": name, "password": TEST_PASSWORD, "roles": roles}
            admin.call("PUT", f"/v1/admin/people/{username}", body)
        asks = [
            (demo.WELFARE, demo.IDENTITY, ["given_name", "family_name", "date_of_birth"]),
            (demo.CIVIL, INCOME, ["year", "total_income_cents"]),
        ]
        made = []
        for consumer, item, fields in asks:
            body = {
                "consumer": consumer,
                "item": item,
                "purpose": demo.PURPOSE,
                "purpose_text": "Deciding subsistence benefit applications",
                "legal_basis": "Social Welfare Act §37(2)",
                "fields": fields,
            }
            made.append(admin.call("POST", "/v1/access-requests", body))
        grants = admin.call("GET", "/v1/grants")["grants"]
    grant = next(g for g in grants if g["item"] == ITEM and g["consumer"] == demo.WELFARE)
    subject = next(iter(demo.sample_records()[ITEM]))
    return {"subject": subject, "waiting": made[0]["id"], "grant": grant["id"]}


@dataclass
class Shot:
    """A page: its file name, how to reach it, and its heading in a language."""

    name: str
    go: Callable[[Page, DemoWorld], object]  # leaves the browser on the page
    heading: Callable[[str], str] | None  # the language's h1; None: data, the same in both
    tallest: int = TALLEST  # px photographed from the top


def _visit(path: str) -> Callable[[Page, DemoWorld], object]:
    def go(page: Page, world: DemoWorld) -> None:
        answer = page.goto(path.format(world=world))
        assert answer is not None
        assert answer.status == 200, (path, answer.status)

    return go


def _text(message: str, **values: object) -> Callable[[str], str]:
    def heading(language: str) -> str:
        translated = translations(language).gettext(message)
        return translated % values if values else translated

    return heading


def _search(page: Page, world: DemoWorld, **fields: str) -> None:
    """The log searched through its form (the identifier is POSTed, in no address)."""
    _visit("/audit")(page, world)
    page.locator("#subject").fill(world.subject)
    for name, value in fields.items():
        field = page.locator(f"#{name}")
        if field.evaluate("e => e.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)
    page.locator("form[action='/audit'] button:not([formaction])").first.click()
    page.wait_for_load_state()
    assert page.locator("#results a").count() > 0


def _results(page: Page, world: DemoWorld) -> None:
    _search(page, world)


def _verified_entry(page: Page, world: DemoWorld) -> None:
    _search(page, world, action="record.query", outcome="ok")
    page.locator("#results a").first.click()
    page.wait_for_url("**/audit/entries/*")
    for _ in range(50):  # a checkpoint comes every 0.2 s
        if "✓" in page.locator("#proof-verdict").inner_text():
            return
        page.wait_for_timeout(100)
        page.reload()
    raise AssertionError(page.locator("#proof-verdict").inner_text())


SIGNED_OUT = [Shot("sign-in", _visit("/sign-in"), _text("Sign in"))]
STEWARDS = [
    Shot("catalogue", _visit("/catalogue"), _text("Catalogue")),
    Shot("item", _visit(f"/catalogue/{ITEM}"), None),
    Shot("ask-for-access", _visit(f"/catalogue/{INCOME}/request"), None),
    Shot("inbox", _visit("/inbox"), _text("Requests to your department")),
    Shot("request", _visit("/requests/{world.waiting}"), None, tallest=1500),
    Shot("outbox", _visit("/outbox"), _text("Your department's requests")),
    Shot("grants", _visit("/grants"), _text("Grants")),
    Shot("grant", _visit("/grants/{world.grant}"), None),
    Shot("register", _visit("/register"), _text("Register a data item")),
    Shot("new-version", _visit(f"/catalogue/{ITEM}/versions/new"), None),
    Shot("lifecycle", _visit(f"/catalogue/{ITEM}/lifecycle"), None),
    Shot("account", _visit("/account"), _text("Your account")),
]
AUDITORS = [
    Shot("audit-search", _visit("/audit"), _text("Search the audit log")),
    Shot("audit-results", _results, None),  # "Results: N entries on this page", N the demo's
    Shot("audit-entry", _verified_entry, None),
    Shot("checkpoints", _visit("/checkpoints"), _text("Checkpoint history")),
    Shot("efficiency", _visit("/efficiency"), None),
]
ADMINISTRATORS = [
    Shot("departments", _visit("/admin/departments"), _text("Departments")),
    Shot("department", _visit(f"/admin/departments/{demo.CIVIL}"), None),
    Shot("clients", _visit("/admin/clients"), _text("Clients")),
    Shot("client", _visit(f"/admin/clients/{demo.WELFARE}-adapter"), None),
    Shot("people", _visit("/admin/people"), _text("People")),
    Shot("person", _visit(f"/admin/people/{STEWARD}"), None),
    Shot("new-person", _visit("/admin/new-person"), _text("Add a person")),
    Shot("dead-letters", _visit("/admin/dead-letters"), _text("Dead letters")),
    Shot("signing-keys", _visit("/admin/signing-keys"), _text("Signing keys")),
]
CITIZENS = [
    Shot("citizen-sign-in", _visit("/citizen"), _text("Who used my data")),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not WRITE:
        return tmp_path_factory.mktemp("screenshots")
    fonts = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True)
    assert fonts.stdout.strip(), "no CJK font: the Chinese pictures would show empty boxes"
    DOCS.mkdir(parents=True, exist_ok=True)
    return DOCS


def _photograph(
    watched: Watched, shot: Shot, language: str, folder: Path, *, always: bool = False
) -> str:
    """Check the page (axe-core in Chinese only), photograph it (when writing the docs'
    pictures, or ``always``); its ``<h1>``."""
    page = watched.page
    assert page.locator("html").get_attribute("lang") == language
    watched.check(axe=language != "en")
    h1 = page.locator("h1").inner_text().strip()
    if not (WRITE or always):
        return h1
    height = min(shot.tallest, int(page.evaluate("document.documentElement.scrollHeight")))
    clip = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height}
    page.screenshot(path=folder / f"{shot.name}.{language}.png", full_page=True, clip=clip)  # type: ignore[arg-type]
    return h1


def _check_heading(shot: Shot, language: str, h1: str, headings: dict[str, str]) -> None:
    if shot.heading is not None:
        assert h1 == shot.heading(language), (shot.name, language, h1)
    elif shot.name == "audit-entry":
        assert h1.startswith("Entry ") if language == "en" else CJK.search(h1), h1
    elif shot.name == "efficiency":
        assert h1.startswith(translations(language).gettext("Efficiency")), h1
    elif language == "en":
        assert not CJK.search(h1), h1
        headings[shot.name] = h1
    elif shot.name in headings:
        english = headings[shot.name]
        # The data's own words stay; the sentence around them is translated.
        assert h1 == english or CJK.search(h1), (shot.name, h1, english)


def _context_page(browser: Browser, world: DemoWorld, language: str) -> Watched:
    """A fresh browser (no cookies), 960 px wide, switched to ``language``."""
    context = browser.new_context(base_url=world.url, viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(10_000)
    watched = Watched(context.new_page(), without_scripts=False)
    answer = watched.page.goto(f"/language/{language}?next=/sign-in")
    assert answer is not None
    assert answer.status == 200
    return watched


def _switch_language(watched: Watched, language: str) -> None:
    """The language switch, as a person clicks it (signed in or not)."""
    answer = watched.page.goto(f"/language/{language}?next=/catalogue")
    assert answer is not None
    assert answer.status == 200
    assert watched.page.locator("html").get_attribute("lang") == language


def _sign_in(watched: Watched, username: str) -> None:
    page = watched.page
    page.goto("/sign-in")
    page.locator("#username").fill(username)
    page.locator("#password").fill(TEST_PASSWORD)
    page.locator("main form button[type='submit']").click()
    page.wait_for_url("**/catalogue")


@pytest.mark.parametrize(
    ("who", "shots"),
    [
        ("", SIGNED_OUT),
        (STEWARD, STEWARDS),
        (AUDITOR, AUDITORS),
        (ADMINISTRATOR, ADMINISTRATORS),
    ],
    ids=["signed-out", "steward", "auditor", "administrator"],
)
def test_every_page_in_both_languages_is_checked_and_photographed(
    browser: Browser,
    world: DemoWorld,
    folder: Path,
    who: str,
    shots: list[Shot],
) -> None:
    headings: dict[str, str] = {}
    watched = _context_page(browser, world, LANGUAGES[0])
    try:
        if who:
            _sign_in(watched, who)
        for language in LANGUAGES:
            _switch_language(watched, language)
            for shot in shots:
                shot.go(watched.page, world)
                h1 = _photograph(watched, shot, language, folder, always=shot is shots[0])
                _check_heading(shot, language, h1, headings)
    finally:
        watched.page.context.close()


def test_the_citizens_page_in_both_languages(
    browser: Browser,
    world: DemoWorld,
    folder: Path,
) -> None:
    world.citizen_provider.behaviour.claims = {CLAIM: world.subject}
    for language in LANGUAGES:
        watched = _context_page(browser, world, language)
        page = watched.page
        try:
            for shot in CITIZENS:
                shot.go(page, world)
                h1 = _photograph(watched, shot, language, folder, always=True)
                _check_heading(shot, language, h1, {})
            page.goto("/citizen/sign-in")
            page.wait_for_url("**/citizen")
            assert page.locator("main table tbody tr").count() > 0
            h1 = _photograph(watched, Shot("citizen", _visit("/citizen"), None), language, folder)
            assert h1 == translations(language).gettext("Who used my data")
        finally:
            page.context.close()
