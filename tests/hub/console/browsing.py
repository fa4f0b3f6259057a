"""The console's browser tests' shared pieces: Debian's Chromium driven by Playwright
(``executable_path``, never Playwright's own browser download), and a watched page
that checks itself with axe-core.

The browser tests run on the embedded database only (``EMBEDDED``, decision 0033), with
JavaScript on; what they check of a page is its HTML, its keyboard flow and its
accessibility, with JavaScript and without.

``Watched.check`` asserts no Content-Security-Policy report or failed load in the
browser's console, no inline script, and no axe-core violation (WCAG 2.0, 2.1 and 2.2,
A and AA; axe-core is vendored in ``axe/``, injected by the test, never served by the
hub) twice: on the page as it is now, scripts run, and on the page a reader without
JavaScript gets: the document the hub served for it, shown again in a scripted page
with its ``<script>`` elements removed (styles and all), where axe-core runs.

What a check costs, and what keeps it small (the browser tests check some 200 page states):

- axe-core's results leave the page as its violations' ids and targets only: its whole
  result (every rule's passing and inapplicable nodes, with their HTML) took longer to
  serialize than axe-core took to find it;
- its 500 KB source is evaluated once per document (not again while ``window.axe`` is
  there: a page checked again after its script changed it), and through a DevTools
  session of the page's own: Playwright's ``evaluate`` parses what it is given in its
  driver first, some 25 ms a time for this source;
- the served documents without their scripts are shown again in one scripted page per
  browser (``_Twin``), written into it rather than loaded anew each time: axe-core
  stays loaded there, and the page's assets come from the browser's cache; no second
  browsing of the flow with JavaScript off is needed (it loaded every page again, and
  signed everyone in again, to be checked the same way);
- a state already checked is not run through axe-core again (``_checked``): the same
  address and document (CSRF token aside), checked the same way, at the same viewport,
  with the same element focused and hovered, where axe-core found nothing before. The
  console, failed-load and inline-script assertions still run at every check.
"""

import os
import re
import shutil
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    CDPSession,
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


# The database the browser tests run on (decision 0033): the console's server behaviour
# on both databases is the HTTP tests' (*_pages.py, test_console_http.py).
EMBEDDED = ["sqlite"]


@contextmanager
def launched_browser() -> Iterator[Browser]:
    """Debian's Chromium, started once per test file (the ``browser`` fixture in
    this folder's conftest.py): starting it costs seconds, and each test makes its own
    contexts, so nothing of one test's browsing reaches another's."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        _twins.pop(launched, None)
        launched.close()


# axe-core's violations, each as its id and its nodes' selectors: only the violations
# are gathered in full (resultTypes), and only they leave the page.
_RUN_AXE = """([kind, values]) => axe.run(document, {
    runOnly: {type: kind, values: values}, resultTypes: ['violations'],
}).then(results => results.violations.map(v => [v.id, v.nodes.map(n => n.target)]))"""
# The focused element and the innermost hovered one, each as its path from the root
# (their styles, GOV.UK's yellow focus for one, are what axe-core's contrast rule sees).
_TOUCHED = """() => [document.activeElement, [...document.querySelectorAll(':hover')].pop()]
    .map(e => { const path = [];
        for (; e && e.parentElement; e = e.parentElement)
            path.push(e.tagName + ':' + [...e.parentElement.children].indexOf(e));
        return path.reverse().join('/'); }).join(' ')"""
_CSRF_VALUE = re.compile(r'(name="csrf_token" value=")[^"]*"')
# The states (Watched.check, _state) where axe-core found no violation, in this process.
_checked: set[tuple[str, ...]] = set()
# Each page's DevTools session (axe_violations), gone with the page.
_devtools: weakref.WeakKeyDictionary[Page, CDPSession] = weakref.WeakKeyDictionary()


def axe_violations(page: Page, *, rules: list[str] | None = None) -> list[tuple[str, list[Any]]]:
    """axe-core's violations on ``page`` as it is now (its id, and the nodes' selectors):
    of the WCAG A and AA rules (``AXE_TAGS``), or of ``rules`` alone (by their ids, such as
    the best practice ``region``).

    The page's CSP refuses an injected script tag (add_script_tag's inline script is
    reported as a violation): axe-core is evaluated through the DevTools protocol
    instead, which a page's CSP does not govern; once per document."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        if page not in _devtools:
            _devtools[page] = page.context.new_cdp_session(page)
        loaded = _devtools[page].send("Runtime.evaluate", {"expression": AXE_SOURCE})
        assert "exceptionDetails" not in loaded, loaded["exceptionDetails"]
    which = ["rule", rules] if rules else ["tag", AXE_TAGS]
    found: list[list[Any]] = page.evaluate(_RUN_AXE, which)
    return [(rule, targets) for rule, targets in found]


def _state(how: str, url: str, document: str, *more: str) -> tuple[str, ...]:
    """What axe-core's verdict on a page depends on: how it is checked, the page's
    address (its path and query) and its document, CSRF token aside (each session's
    own), and ``more`` (the viewport, the focused and hovered elements)."""
    return (how, url.split("/", 3)[3], _CSRF_VALUE.sub(r'\1"', document), *more)


class _Twin:
    """A scripted page, one per browser, where the document of a page whose JavaScript
    is off is shown again without its scripts, at that page's address: loaded there the
    first time for the origin (the hub's answer replaced by the document), then written
    into it (``set_content``) after its address is set (``history.replaceState``)."""

    def __init__(self, browser: Browser) -> None:
        self.context = browser.new_context(java_script_enabled=True)
        self.page = self.context.new_page()
        self.origin = self._url = self._document = ""

    def violations(self, url: str, document: str) -> list[tuple[str, list[Any]]]:
        origin = "/".join(url.split("/", 3)[:3])
        if origin == self.origin:
            self.page.evaluate("url => history.replaceState(null, '', url)", url)
            self.page.set_content(document)
        else:
            self._url, self._document = url, document
            self.page.route(lambda address: address == self._url, self._as_seen)
            self.page.goto(url)
            self.page.unroute_all()  # a route turns the browser's cache off
            self.origin = origin
        assert self.page.url == url, (self.page.url, url)
        return axe_violations(self.page)

    def _as_seen(self, route: Route) -> None:
        route.fulfill(status=200, content_type="text/html; charset=utf-8", body=self._document)


_twins: dict[Browser, _Twin] = {}


class Watched:
    """A page and what its browser console said (CSP violations are reported there),
    and the document the hub served for it last (``check`` checks it without scripts,
    unless ``without_scripts`` is false)."""

    def __init__(self, page: Page, *, without_scripts: bool = True) -> None:
        self.page = page
        self.without_scripts = without_scripts
        self.messages: list[str] = []
        self._served: Response | None = None
        page.on("console", self._heard)
        page.on("response", self._answered)

    def _heard(self, message: ConsoleMessage) -> None:
        # A page answered 400 or 401 (a form with errors) is reported as a failed load:
        # what the page loads is watched in _answered instead.
        if message.type in ("error", "warning") and "Failed to load resource" not in message.text:
            self.messages.append(message.text)

    def _answered(self, response: Response) -> None:
        if response.request.resource_type != "document":
            if response.status >= 400:
                self.messages.append(f"{response.status} {response.url}")
        elif response.frame == self.page.main_frame and not 300 <= response.status < 400:
            self._served = response

    def check(self, *, axe: bool = True) -> None:
        """No CSP violation or failed load so far, no inline script, and (unless ``axe``
        is false) no axe-core violation on the page as it is now, nor on its served
        document without scripts (unless this very state passed already)."""
        assert self.messages == [], self.messages
        document = self.page.content()
        assert not re.search(r"<script(?![^>]*\bsrc=)", document)
        if not axe:
            return
        url = self.page.url
        viewport = str(self.page.viewport_size)
        state = _state("scripted", url, document, viewport, self.page.evaluate(_TOUCHED))
        if state not in _checked:
            violations = axe_violations(self.page)
            assert violations == [], (url, violations)
            _checked.add(state)
        if self.without_scripts:
            self._check_without_scripts(url)

    def _check_without_scripts(self, url: str) -> None:
        """axe-core on the document the hub served for this page, its scripts removed:
        the page a reader without JavaScript gets."""
        assert self._served is not None, f"no document was served for {url}"
        assert self._served.url == url, (self._served.url, url)
        without_scripts = _SCRIPT_ELEMENT.sub("", self._served.text())
        state = _state("without scripts", url, without_scripts)
        if state in _checked:
            return
        browser = self.page.context.browser
        assert browser is not None
        twin = _twins.get(browser) or _twins.setdefault(browser, _Twin(browser))
        violations = twin.violations(url, without_scripts)
        assert violations == [], (url, "without scripts", violations)
        _checked.add(state)


@dataclass
class Browsing:
    """A browser context and its pages."""

    context: BrowserContext

    def page(self) -> Watched:
        return Watched(self.context.new_page())


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


def visitor(browser: Browser, base_url: str) -> Visitor:
    """A new context with one watched page; close its context."""
    context = browser.new_context(base_url=base_url)
    context.set_default_timeout(10_000)
    return Visitor(context=context, watched=Watched(context.new_page()))


# The window widths a page must fit (docs/console.md, "Accessibility"): a laptop's and
# the narrowest phone's (WCAG 1.4.10 reflows content at 320 CSS pixels).
WINDOWS = (1280, 320)
# Tables outside a focusable, named region of their own (macros.html, scrolling_table).
_LOOSE_TABLES = """() => [...document.querySelectorAll('main table')].filter(table => {
    const box = table.closest('[role=region][tabindex="0"]');
    const name = box && document.getElementById(box.getAttribute('aria-labelledby'));
    return !name || !name.textContent.trim();
}).map(table => table.id || table.outerHTML.slice(0, 80))"""


def check_fits_windows(watched: Watched, *, widths: tuple[int, ...] = WINDOWS) -> None:
    """At each window width the page does not scroll sideways (a wide table scrolls in
    its own box: every table is in a focusable region named by its heading or caption),
    and ``Watched.check`` passes at that size. Leaves the page at the last width."""
    page = watched.page
    for width in widths:
        page.set_viewport_size({"width": width, "height": 900})
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= width, (page.url, f"{wide} px wide in a {width} px window")
        assert page.evaluate(_LOOSE_TABLES) == [], page.url
        watched.check()


def check_landmarks(watched: Watched) -> None:
    """Every part of the page is in a landmark (header, navigation, main, footer):
    axe-core's best-practice rule ``region``, which the WCAG tags leave out."""
    assert axe_violations(watched.page, rules=["region"]) == [], watched.page.url
