"""Rendering a console page for a visit: the one way every group of pages answers.

:func:`render` fills the layout's context (the visitor, the navigation their roles
open, the page's own path for the language switch) and sets the pre-session cookie a
signed-out visitor's first form needs. Page groups (catalogue and sign-in in
``endpoints``; stewards', auditors', administrators' and the citizen's pages in their
own modules, each with its own router added in ``endpoints.install``) call it.
"""

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from onceonly.hub.console import cookies, pages, views
from onceonly.hub.console.dependencies import Visit


def render(
    request: Request, visit: Visit, template: str, *, status: int = 200, **context: Any
) -> HTMLResponse:
    """``template`` in the visitor's language with the layout's context."""
    response = pages.page(
        template,
        language=visit.language,
        production=visit.production,
        status=status,
        visit=visit,
        path=page_path(request),
        navigation=views.navigation(visit.principal) if visit.principal else [],
        who_may_use=views.who_may_use,
        **context,
    )
    if visit.new_pre_session is not None:
        cookies.put(
            response,
            cookies.PRE_SESSION,
            visit.new_pre_session,
            max_age=cookies.PRE_SESSION_SECONDS,
            production=visit.production,
        )
    return response


def page_path(request: Request) -> str:
    """Where the language switch brings the visitor back: the page with its query, but
    never an OpenID callback's (its ``code`` and ``state`` go into no page)."""
    if request.url.path.endswith("/callback") or not request.url.query:
        return request.url.path
    return f"{request.url.path}?{request.url.query}"
