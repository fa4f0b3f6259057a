"""The console's cookies: the sign-in, the sign-in form's CSRF binding, the language.

All are ``HttpOnly`` and ``Path=/``; in production they are ``Secure`` and named with
the ``__Host-`` prefix, so that a browser keeps them only as set by this host over
https (RFC 6265bis §4.1.3.2). The sign-in is ``SameSite=Strict``: no other site's
page ever makes a request that carries it. It holds the person's session token
(onceonly.hub.people.service), which the hub stores only hashed and checks on every
request, with the account's status and roles as they are now. The session lasts
``session_lifetime`` at the hub; the browser keeps the cookie a day longer
(:func:`put_session`), so that the hub, not the browser, ends the sign-in and can say so:
a cookie the browser had dropped at the same moment would leave a visitor it cannot
tell from one who never signed in ("Your sign-in has ended", decision 0058). The token
is dead at the hub by then; keeping it longer in the browser opens nothing.

A citizen's sign-in (onceonly.hub.citizen.service, decision 0032) is a cookie of its
own, ``SameSite=Strict`` too: staff pages never read it, citizen pages read nothing
else. A login in progress with an OpenID Connect provider is the one ``SameSite=Lax``
cookie that carries a secret (the sealed ``state``, ``nonce`` and PKCE verifier): the
provider sends the browser back with a cross-site top-level GET, which a Strict
cookie would not come with. It lasts 10 minutes, and is a ``__Host-`` cookie with
``Path=/`` in production like the others (and so is the API's own, ``API_LOGIN``, for
``onceonly login --oidc``): a cookie limited to its callback's path could
only be ``__Secure-``, which a sibling host (``evil.example.gov``) may set for
``Domain=example.gov`` and that path, signing the victim in with the attacker's login
(login CSRF). The staff's login and the citizen's have a cookie each, so that one
begun in the same browser does not replace the other.

An auditor's log search is kept between its pages in a cookie of its own,
``SameSite=Strict`` and sealed by the hub (AES-256-GCM), bound to the sign-in that made
it and good for 30 minutes (``log_search.seal_search``): the person's identifier it may
hold goes in no address, and the browser cannot read it.
"""

from typing import Final, Literal

from starlette.requests import Request
from starlette.responses import Response

SESSION: Final = "onceonly-console"
PRE_SESSION: Final = "onceonly-console-pre"
LANGUAGE: Final = "onceonly-language"
CITIZEN: Final = "onceonly-citizen"
OIDC_LOGIN: Final = "onceonly-oidc-login"  # a staff's login with the provider
CITIZEN_LOGIN: Final = "onceonly-citizen-login"  # a citizen's, with the citizens' provider
# A login begun at the API's /v1/people/oidc/start (the CLI's, or a token page's): the
# same rule as the console's two (people.oidc_endpoints), a cookie of its own.
API_LOGIN: Final = "onceonly-api-login"
AUDIT_SEARCH: Final = "onceonly-audit-search"  # an auditor's search, sealed (decision 0058)
PRE_SESSION_SECONDS: Final = 3600
ENDED_NOTICE_SECONDS: Final = 24 * 3600  # how long past its end a sign-in is told apart
LANGUAGE_SECONDS: Final = 365 * 24 * 3600


def name(base: str, *, production: bool) -> str:
    return f"__Host-{base}" if production else base


def read(request: Request, base: str, *, production: bool, max_length: int = 200) -> str | None:
    value = request.cookies.get(name(base, production=production))
    return value if value and len(value) <= max_length else None


def put(
    response: Response,
    base: str,
    value: str,
    *,
    max_age: int,
    production: bool,
    same_site: Literal["strict", "lax"] = "strict",
) -> None:
    response.set_cookie(
        name(base, production=production),
        value,
        max_age=max_age,
        path="/",
        secure=production,
        httponly=True,
        samesite=same_site,
    )


def put_session(response: Response, token: str, *, lifetime: int, production: bool) -> None:
    """The staff sign-in cookie, kept by the browser ``ENDED_NOTICE_SECONDS`` past the
    session's ``lifetime`` at the hub (see the module's docstring)."""
    put(response, SESSION, token, max_age=lifetime + ENDED_NOTICE_SECONDS, production=production)


def remove(response: Response, base: str, *, production: bool) -> None:
    response.delete_cookie(
        name(base, production=production),
        path="/",
        secure=production,
        httponly=True,
        samesite="strict",
    )


def put_login(response: Response, base: str, value: str, *, max_age: int, production: bool) -> None:
    """A login in progress (``OIDC_LOGIN``, ``CITIZEN_LOGIN`` or ``API_LOGIN``):
    ``SameSite=Lax``, since the provider's redirect back is a top-level cross-site GET;
    ``__Host-`` and ``Path=/`` in production, so that no other host can set it (see the
    module's docstring)."""
    put(response, base, value, max_age=max_age, production=production, same_site="lax")


def read_login(request: Request, base: str, *, production: bool) -> str | None:
    """The sealed login, as sent (``people.oidc`` opens it and bounds what it reads)."""
    return request.cookies.get(name(base, production=production))


def remove_login(response: Response, base: str, *, production: bool) -> None:
    response.delete_cookie(
        name(base, production=production),
        path="/",
        secure=production,
        httponly=True,
        samesite="lax",
    )
