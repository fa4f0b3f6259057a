"""The login cookie of an OpenID Connect sign-in in production (hub/console/cookies.py):
a ``__Host-`` cookie with ``Path=/`` and no ``Domain``, so that no sibling host can set
it. It was ``__Secure-`` with its callback's path, which ``evil.example.gov`` may set for
``Domain=example.gov`` and that path, signing the victim in with the attacker's login
(login CSRF). The callbacks' use of it over HTTP (its path, its removal) is in
test_citizen_pages.py; a production hub cannot run the test provider (http://)."""

import pytest
from starlette.requests import Request
from starlette.responses import Response

from onceonly.hub.console import cookies

LOGINS = [cookies.OIDC_LOGIN, cookies.CITIZEN_LOGIN]


def _attributes(response: Response) -> tuple[str, set[str]]:
    (line,) = response.headers.getlist("set-cookie")
    first, *rest = (part.strip() for part in line.split(";"))
    return first.split("=", 1)[0], set(rest)


@pytest.mark.parametrize("base", LOGINS)
def test_a_login_in_production_is_a_host_cookie_for_the_whole_host(base: str) -> None:
    response = Response()
    cookies.put_login(response, base, "sealed", max_age=600, production=True)
    name, attributes = _attributes(response)
    assert name == f"__Host-{base}"
    assert {"Path=/", "Secure", "HttpOnly", "SameSite=lax", "Max-Age=600"} <= attributes
    assert not any(part.lower().startswith("domain") for part in attributes)


@pytest.mark.parametrize("base", LOGINS)
def test_a_callback_reads_and_clears_the_login_by_the_same_name_and_path(base: str) -> None:
    request = Request({"type": "http", "headers": [(b"cookie", f"__Host-{base}=s".encode())]})
    assert cookies.read_login(request, base, production=True) == "s"
    response = Response()
    cookies.remove_login(response, base, production=True)
    name, attributes = _attributes(response)
    assert name == f"__Host-{base}"
    assert {"Path=/", "Secure", "HttpOnly", "SameSite=lax", "Max-Age=0"} <= attributes


def test_the_staffs_login_and_the_citizens_are_two_cookies() -> None:
    assert cookies.OIDC_LOGIN != cookies.CITIZEN_LOGIN
