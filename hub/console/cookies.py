"""The console's cookies: the sign-in, the sign-in form's CSRF binding, the language.

All are ``HttpOnly`` and ``Path=/``; in production they are ``Secure`` and named with
the ``__Host-`` prefix, so that a browser keeps them only as set by this host over
https (RFC 6265bis §4.1.3.2). The sign-in is ``SameSite=Strict``: no other site's
page ever makes a request that carries it. It holds the person's session token
(onceonly.hub.people.service), which the hub stores only hashed and checks on every
request, with the account's status and roles as they are now; it lasts
``session_lifetime``, in the browser and at the hub.
"""

from typing import Final, Literal

from starlette.requests import Request
from starlette.responses import Response

SESSION: Final = "onceonly-console"
PRE_SESSION: Final = "onceonly-console-pre"
LANGUAGE: Final = "onceonly-language"
PRE_SESSION_SECONDS: Final = 3600
LANGUAGE_SECONDS: Final = 365 * 24 * 3600


def name(base: str, *, production: bool) -> str:
    return f"__Host-{base}" if production else base


def read(request: Request, base: str, *, production: bool) -> str | None:
    value = request.cookies.get(name(base, production=production))
    return value if value and len(value) <= 200 else None


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


def remove(response: Response, base: str, *, production: bool) -> None:
    response.delete_cookie(
        name(base, production=production),
        path="/",
        secure=production,
        httponly=True,
        samesite="strict",
    )
