"""The console's browser: one Chromium per test process, shared by every browser test
file of this folder (xdist hands out whole files; a worker runs several of them)."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from tests.hub.console.browsing import launched_browser


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with launched_browser() as launched:
        yield launched
