"""The console's browser tests' shared pieces: Debian's Chromium driven by Playwright
(``executable_path``, never Playwright's own browser download), and a watched page
that checks itself with axe-core.

``Watched.check`` asserts no Content-Security-Policy report or failed load in the
browser's console, no inline script, and no axe-core violation (WCAG 2.0, 2.1 and 2.2,
A and AA; axe-core is vendored in ``axe/``, injected by the test, never served by the
hub). With ``axe_without_scripts``, a page of a context whose JavaScript is off is
checked too: its document, as the browser parsed it, is shown again in a scripted
context with its ``<script>`` elements removed (so it is the page a reader without
JavaScript gets, styles and all), and axe-core runs there.
"""

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Response,
    Route,
    sync_playwright,
)

CHROMIUM = "/usr/bin/chromium"
# The machine's closed network refuses background connections; these keep Chromium
# from trying (and from waiting for them).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE = Path(__file__).resolve().parent / "axe" / "axe.min.js"
AXE_SOURCE = AXE.read_text()
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
_SCRIPT_ELEMENT = re.compile(r"<script\b[^>]*>.*?</script>", re.S | re.I)

# In CI a missing browser fails the tests (.ci/run installs it); elsewhere they skip.
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (.ci/run installs it)",
)


def javascript_on(request: pytest.FixtureRequest) -> bool:
    """Whether a browser test's context runs JavaScript: on with SQLite, off with
    PostgreSQL. Each browser test runs once per database, so every page is tried with
    and without JavaScript and on both stores, without the four-fold product of the
    two (a browser test costs seconds; what the pages store is tested on both
    databases by the HTTP tests too, and the page without JavaScript is the same HTML)."""
    callspec = getattr(request.node, "callspec", None)
    values = callspec.params.values() if callspec is not None else ()
    return [v for v in values if v in ("sqlite", "postgres")] == ["sqlite"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def axe_violations(page: Page) -> list[tuple[str, list[Any]]]:
    """axe-core's violations on ``page`` as it is now (its id, and the nodes' selectors).

    The page's CSP refuses an injected script tag (add_script_tag's inline script is
    reported as a violation): axe-core is evaluated through the DevTools protocol
    instead, which a page's CSP does not govern."""
    page.evaluate(AXE_SOURCE)
    results: dict[str, Any] = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS
    )
    return [(v["id"], [n["target"] for n in v["nodes"]]) for v in results["violations"]]


class Watched:
    """A page and what its browser console said (CSP violations are reported there)."""

    def __init__(
        self, page: Page, *, scripted: bool = True, axe_without_scripts: bool = False
    ) -> None:
        self.page = page
        self.scripted = scripted
        self.axe_without_scripts = axe_without_scripts
        self.messages: list[str] = []
        self._twin: Page | None = None  # see _violations_without_scripts
        self._twin_url = self._twin_document = ""
        page.on("console", self._heard)
        page.on("response", self._answered)

    def _heard(self, message: ConsoleMessage) -> None:
        # A page answered 400 or 401 (a form with errors) is reported as a failed load:
        # what the page loads is watched in _answered instead.
        if message.type in ("error", "warning") and "Failed to load resource" not in message.text:
            self.messages.append(message.text)

    def _answered(self, response: Response) -> None:
        if response.request.resource_type != "document" and response.status >= 400:
            self.messages.append(f"{response.status} {response.url}")

    def check(self) -> None:
        """No CSP violation or failed load so far, no inline script, and no axe-core
        violation on the page as it is now."""
        assert self.messages == [], self.messages
        assert not re.search(r"<script(?![^>]*\bsrc=)", self.page.content())
        if self.scripted:
            violations = axe_violations(self.page)
        elif self.axe_without_scripts:
            violations = self._violations_without_scripts()
        else:
            return  # Playwright cannot evaluate in a page whose scripts are off; the
            # same pages are checked by axe-core in the scripted runs
        assert violations == [], (self.page.url, violations)

    def _violations_without_scripts(self) -> list[tuple[str, list[Any]]]:
        """axe-core on this page's document (JavaScript off), shown again at its own
        address in a scripted context without its scripts (its assets load as
        usual). The twin context is made once, and closed with the page."""
        self._twin_url = self.page.url
        self._twin_document = _SCRIPT_ELEMENT.sub("", self.page.content())
        if self._twin is None:
            browser = self.page.context.browser
            assert browser is not None
            context = browser.new_context(java_script_enabled=True)
            self._twin = context.new_page()
            self._twin.route(lambda address: address == self._twin_url, self._as_seen)
            self.page.on("close", lambda _: context.close())
        self._twin.goto(self._twin_url)
        return axe_violations(self._twin)

    def _as_seen(self, route: Route) -> None:
        route.fulfill(status=200, content_type="text/html; charset=utf-8", body=self._twin_document)


@dataclass
class Browsing:
    """A browser context with JavaScript on or off, and its pages."""

    context: BrowserContext
    scripted: bool
    axe_without_scripts: bool = False

    def page(self) -> Watched:
        return Watched(
            self.context.new_page(),
            scripted=self.scripted,
            axe_without_scripts=self.axe_without_scripts,
        )


@dataclass
class Visitor:
    """One person's browser (a context of their own, so sign-ins do not mix) with one
    watched page."""

    context: BrowserContext
    watched: Watched

    @property
    def page(self) -> Page:
        return self.watched.page

    def check(self) -> None:
        self.watched.check()

    def path(self) -> str:
        """The page's path (and query), without the hub's address."""
        return "/" + self.page.url.split("/", 3)[3]


def visitor(
    browser: Browser, base_url: str, *, scripted: bool, axe_without_scripts: bool = True
) -> Visitor:
    """A new context (JavaScript on or off) with one watched page; close its context."""
    context = browser.new_context(base_url=base_url, java_script_enabled=scripted)
    context.set_default_timeout(10_000)
    watched = Watched(
        context.new_page(), scripted=scripted, axe_without_scripts=axe_without_scripts
    )
    return Visitor(context=context, watched=watched)
