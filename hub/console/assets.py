"""The console's static files: an explicit list, served from the package at ``/assets``.

Everything a page loads comes from the hub (no CDN), so a hub on a closed network
shows its console whole. The GOV.UK Frontend files are vendored by
``tools/vendor_assets.py`` with their licence and ``SHA256SUMS`` (decision 0028).
"""

from functools import cache
from importlib.resources import files
from typing import Final

ASSETS_PATH: Final = "/assets"
_JS, _CSS = "text/javascript; charset=utf-8", "text/css; charset=utf-8"
# Served name -> (file under assets/, media type). Nothing else is served.
ASSETS: Final[dict[str, tuple[str, str]]] = {
    "console.css": ("govuk-frontend/console.css", _CSS),
    "govuk-frontend.min.js": ("govuk-frontend/govuk-frontend.min.js", _JS),
    "console.js": ("console.js", _JS),
    "favicon.svg": ("favicon.svg", "image/svg+xml"),
}


@cache
def asset(name: str) -> bytes:
    """The bytes of a served asset (read once), for a name of :data:`ASSETS`."""
    return (files("onceonly.hub.console") / "assets" / ASSETS[name][0]).read_bytes()


def media_type(name: str) -> str:
    return ASSETS[name][1]
