"""The console's browser: one Chromium per browser test file of this folder.

Not one per test process: Playwright's sync API keeps an event loop running in the
thread for as long as it is started, so a browser kept for the whole session made
every later test in that worker that runs its own loop (``asyncio.run``, anyio's
runner) fail with "cannot be called from a running event loop"."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from tests.hub.console.browsing import launched_browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_browser() as launched:
        yield launched
