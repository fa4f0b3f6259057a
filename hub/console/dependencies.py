"""Who is visiting the console, in which language, and whether their form is theirs.

:func:`current_visit` reads the cookies: the sign-in (checked by
``people.service.principal_for_token``, as the API checks a bearer token, so a
disabled account or an ended session is signed out on its next request), the
language, and the binding of the visitor's CSRF tokens. Pages that need a person
take :data:`SignedInDep` (a visitor without one goes to the sign-in page); every POST
takes :data:`FormDep`, which refuses a form whose CSRF token does not hold.
"""

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from onceonly.hub.console import cookies, csrf, forms
from onceonly.hub.console import language as languages
from onceonly.hub.console.exceptions import FormRefused, SignInNeeded
from onceonly.hub.dependencies import HubDep
from onceonly.hub.keys import KeyLabel
from onceonly.hub.people import service as people
from onceonly.hub.people.principal import Principal
from onceonly.hub.people.schemas import PersonOut
from onceonly.hub.runtime import Hub


@dataclass(frozen=True, kw_only=True)
class Visit:
    """One request of a browser to the console."""

    language: str
    production: bool
    principal: Principal | None  # None: not signed in
    account: PersonOut | None  # the signed-in person's account, as it is now
    session_token: str | None  # the sign-in cookie's token, if it is a live one
    ended: bool  # a sign-in cookie came, but its session is over (expired, ended)
    pre_session: str | None  # the sign-in form's binding, as the cookie brought it
    new_pre_session: str | None  # a binding made for this answer (set it as a cookie)
    csrf_token: str  # for the forms of this answer's page


def language_of(request: Request, *, production: bool) -> str:
    chosen = cookies.read(request, cookies.LANGUAGE, production=production)
    return languages.negotiate(
        chosen=chosen, accept_language=request.headers.get("accept-language")
    )


async def _signed_in_as(hub: Hub, token: str | None) -> tuple[Principal, PersonOut] | None:
    if token is None:
        return None
    async with hub.sessions() as session:
        principal = await people.principal_for_token(session, token, clock=hub.clock)
        if principal is None or principal.person_id is None:
            return None
        return principal, await people.me(session, principal)


async def current_visit(request: Request, hub: HubDep) -> Visit:
    production = hub.settings.is_production
    token = cookies.read(request, cookies.SESSION, production=production)
    found = await _signed_in_as(hub, token)
    pre_session = cookies.read(request, cookies.PRE_SESSION, production=production)
    new_pre_session = None
    if found is None and pre_session is None:
        new_pre_session = secrets.token_urlsafe(24)
    session_hash = people.token_hash(token) if found is not None and token else None
    key = hub.keys.derived(KeyLabel.CONSOLE_CSRF)
    return Visit(
        language=language_of(request, production=production),
        production=production,
        principal=found[0] if found else None,
        account=found[1] if found else None,
        session_token=token if found else None,
        ended=token is not None and found is None,
        pre_session=pre_session,
        new_pre_session=new_pre_session,
        csrf_token=csrf.token_for(
            key, session_hash=session_hash, pre_session=pre_session or new_pre_session
        ),
    )


VisitDep = Annotated[Visit, Depends(current_visit)]


async def _signed_in(request: Request, visit: VisitDep) -> Visit:
    if visit.principal is None:
        query = f"?{request.url.query}" if request.url.query else ""
        raise SignInNeeded(request.url.path + query)
    return visit


SignedInDep = Annotated[Visit, Depends(_signed_in)]


async def _form(request: Request, visit: VisitDep, hub: HubDep) -> dict[str, str]:
    """The POSTed form, once its CSRF token holds for this visitor: bound to their
    sign-in if they have one, else to the pre-session cookie their browser sent (one
    made for this answer does not count: the form cannot have been made with it)."""
    try:
        values = forms.fields(request.headers.get("content-type"), await request.body())
    except forms.MalformedForm:
        raise FormRefused(400) from None
    session_hash = people.token_hash(visit.session_token) if visit.session_token else None
    key = hub.keys.derived(KeyLabel.CONSOLE_CSRF)
    if not csrf.token_holds(
        key, values.get("csrf_token"), session_hash=session_hash, pre_session=visit.pre_session
    ):
        raise FormRefused(403)
    return values


FormDep = Annotated[dict[str, str], Depends(_form)]
