"""Rendering: a template in the visitor's language, with the console's security headers.

Every answer of the console (page, redirect, asset) carries :func:`security_headers`:
a Content-Security-Policy that allows nothing inline and nothing from elsewhere
(``default-src 'self'``, no ``'unsafe-inline'``), that no one may frame the page
(``frame-ancestors 'none'``) and that forms post only to the hub (``form-action
'self'``); ``nosniff``; no referrer; and in production HSTS.
"""

from functools import cache
from typing import Any, Final
from urllib.parse import urlencode

import jinja2
from fastapi.responses import HTMLResponse, RedirectResponse

from onceonly.hub.console import language as languages
from onceonly.hub.console import views

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
_ALWAYS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Two years, as the HSTS preload list asks; only in production, where the hub is
# reached over https (an http development hub must not pin a browser to https).
_HSTS: Final = {"Strict-Transport-Security": "max-age=63072000; includeSubDomains"}
# Pages show a person's session and data: never kept by a cache or the browser.
_NO_STORE: Final = {"Cache-Control": "no-store"}


def security_headers(*, production: bool) -> dict[str, str]:
    return {**_ALWAYS, **(_HSTS if production else {})}


@cache
def environment(language: str) -> jinja2.Environment:
    """The templates with ``language``'s translations installed (one per language)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("onceonly.hub.console", "templates"),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(  # type: ignore[attr-defined]
        languages.translations(language), newstyle=True
    )
    env.globals.update(
        sharing_classes=views.SHARING_CLASSES,
        classifications=views.CLASSIFICATIONS,
        lifecycles=views.LIFECYCLES,
        roles=views.ROLES,
        sign_in_methods=views.SIGN_IN_METHODS,
        role_names=views.role_names,
    )
    return env


def page(
    template: str,
    *,
    language: str,
    production: bool,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """``template`` rendered in ``language``, with the console's headers."""
    html = (
        environment(language)
        .get_template(template)
        .render(language=language, languages=languages.LANGUAGES, **context)
    )
    return HTMLResponse(
        html,
        status_code=status,
        headers={**security_headers(production=production), **_NO_STORE, **(headers or {})},
    )


def redirect(location: str, *, production: bool, done: str | None = None) -> RedirectResponse:
    """303 See Other: after a form's POST, the browser GETs ``location``. A change that
    succeeded passes its notice's code as ``done``: the address gets ``?done=<code>`` and
    :data:`views.DONE_COOKIE` is set to it, so that only this browser is shown it
    (views.notice). A ``?done=`` already in ``location`` (a return address the visitor
    was given, ``next=``) sets no cookie, so it shows nothing."""
    if done is not None:
        location = f"{location}?{urlencode({'done': done})}"
    response = RedirectResponse(
        location, status_code=303, headers={**security_headers(production=production), **_NO_STORE}
    )
    if done is not None:
        response.set_cookie(
            views.DONE_COOKIE,
            done,
            max_age=views.DONE_SECONDS,
            httponly=True,
            samesite="strict",
            secure=production,
        )
    return response


def local_path(candidate: str | None, *, default: str) -> str:
    """``candidate`` if it is a path on this hub (where to go back to after signing in
    or switching language), else ``default``: never another site (no open redirect)."""
    if not candidate or not candidate.startswith("/") or candidate.startswith("//"):
        return default
    if "\\" in candidate or any(ord(c) < 0x20 or ord(c) == 0x7F for c in candidate):
        return default
    return candidate
