"""The API's own login cookie in production (``GET /v1/people/oidc/start``, the flow of
``onceonly login --oidc``): ``__Host-onceonly-api-login`` with ``Path=/``, ``Secure``,
``HttpOnly``, ``SameSite=Lax``, 10 minutes and no ``Domain``, so that no sibling host
may set it (login CSRF into the CLI's flow, review 176). It was ``onceonly_oidc_login``,
no prefix, limited to the callback's path, which ``evil.example.gov`` may set for
``Domain=example.gov``. A production hub cannot run the test provider (http://), so
the route runs in process with a provider answered by httpx's MockTransport; its use
over HTTP in development (the name, the path, its removal) is in test_people_oidc.py."""

import asyncio
from types import SimpleNamespace

import httpx
import pytest
from starlette.responses import Response

from onceonly.hub.console import cookies
from onceonly.hub.keys import HubKeys
from onceonly.hub.kit.clock import SYSTEM_CLOCK
from onceonly.hub.people import oidc, oidc_endpoints

from tests.hub.test_keys import fixed_keys

ISSUER = "https://id.example.gov"
DISCOVERY = {
    "issuer": ISSUER,
    "authorization_endpoint": f"{ISSUER}/authorize",
    "token_endpoint": f"{ISSUER}/token",
    "jwks_uri": f"{ISSUER}/jwks",
}


def _attributes(line: str) -> tuple[str, set[str]]:
    first, *rest = (part.strip() for part in line.split(";"))
    return first.split("=", 1)[0], set(rest)


def test_the_api_login_in_production_is_a_host_cookie_of_its_own(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    started = asyncio.run(_start_in_production(fixed_keys(tmp_path_factory.mktemp("keys"))))
    (line,) = started.headers.getlist("set-cookie")
    name, attributes = _attributes(line)
    assert name == "__Host-onceonly-api-login"
    assert {"Path=/", "Secure", "HttpOnly", "SameSite=lax", "Max-Age=600"} <= attributes
    assert not any(part.lower().startswith("domain") for part in attributes)
    assert cookies.API_LOGIN not in {cookies.OIDC_LOGIN, cookies.CITIZEN_LOGIN}


async def _start_in_production(keys: HubKeys) -> Response:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=DISCOVERY))
    async with httpx.AsyncClient(transport=transport) as http:
        provider = oidc.Provider(
            issuer=ISSUER, client_id="hub", client_secret=None, http=http, require_https=True
        )
        settings = SimpleNamespace(is_production=True, issuer="https://hub.example.gov")
        started = await oidc_endpoints.start(
            provider,
            settings,  # type: ignore[arg-type]
            keys,
            SYSTEM_CLOCK,
            cli_port=50000,
            cli_state="s" * 16,
        )
    return started
