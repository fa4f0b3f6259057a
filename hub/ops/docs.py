"""The API documentation pages, served by the hub alone (decision 0024, "Docs offline").

FastAPI's own ``/docs`` and ``/redoc`` load Swagger UI, ReDoc and fonts from a CDN, so
on a closed network they stay blank. Here ``/docs`` is a page of the hub's own that
loads Swagger UI from files the hub ships (``docs_assets/``: Swagger UI vendored from
the ``swagger-ui-dist`` package, see ``docs_assets/swagger-ui/SOURCE.md``, and a small
start-up script), all at ``/docs/assets/<name>``. The page has no inline script or
style, so a strict Content-Security-Policy holds: everything comes from the hub, and
nothing may frame the page. ``/redoc`` redirects to ``/docs``: ReDoc injects styles at
run time and has no clean packaged build.

The routes are public and read-only, and stay out of ``/openapi.json``.
"""

from functools import cache
from html import escape
from importlib.resources import files
from typing import Final

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

DOCS_PATH: Final = "/docs"
ASSETS_PATH: Final = "/docs/assets"
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# The page follows the hub's version; the assets are fixed per release, an hour is
# short enough for an upgrade to show.
_PAGE_HEADERS: Final = {**_SECURITY_HEADERS, "Cache-Control": "no-cache"}
_ASSET_HEADERS: Final = {**_SECURITY_HEADERS, "Cache-Control": "public, max-age=3600"}
_JS, _CSS = "text/javascript; charset=utf-8", "text/css; charset=utf-8"
# Served name -> (file under docs_assets/, media type). Nothing else is served.
ASSETS: Final[dict[str, tuple[str, str]]] = {
    "swagger-ui-bundle.js": ("swagger-ui/swagger-ui-bundle.js", _JS),
    "swagger-ui.css": ("swagger-ui/swagger-ui.css", _CSS),
    "favicon-32x32.png": ("swagger-ui/favicon-32x32.png", "image/png"),
    "docs.js": ("docs.js", _JS),
    "docs.css": ("docs.css", _CSS),
}
_PAGE: Final = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="stylesheet" href="{assets}/docs.css">
<script src="{assets}/swagger-ui-bundle.js" defer></script>
<script src="{assets}/docs.js" defer></script>
</head>
<body>
<noscript>This page needs JavaScript; the document: <a href="{openapi}">{openapi}</a></noscript>
<div id="swagger-ui" data-openapi-url="{openapi}"></div>
</body>
</html>
"""


@cache
def asset(name: str) -> bytes:
    """The bytes of a served asset (read once), for a name of :data:`ASSETS`."""
    return (files("onceonly.hub.ops") / "docs_assets" / ASSETS[name][0]).read_bytes()


def page(*, title: str, openapi_url: str) -> str:
    """The ``/docs`` page: Swagger UI on the document at ``openapi_url``, no inline code."""
    return _PAGE.format(
        title=escape(title), assets=escape(ASSETS_PATH), openapi=escape(openapi_url)
    )


def install(app: FastAPI) -> None:
    """Serve ``/docs``, its assets and the ``/redoc`` redirect; create the app with
    ``docs_url=None, redoc_url=None`` so that FastAPI's CDN pages are not served."""
    if app.openapi_url is None:
        raise ValueError("the docs pages need the app's OpenAPI document")
    html = page(title=f"{app.title}: API", openapi_url=app.openapi_url)

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs_page() -> HTMLResponse:
        return HTMLResponse(html, headers=_PAGE_HEADERS)

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        if name not in ASSETS:
            raise HTTPException(404, "no such docs asset")
        return Response(asset(name), media_type=ASSETS[name][1], headers=_ASSET_HEADERS)

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> RedirectResponse:
        return RedirectResponse(DOCS_PATH, status_code=307)
