"""People's sign-in with an OpenID Connect provider (``/v1/people/oidc``).

``GET /start`` sends the browser to the provider, ``GET /callback`` brings it back
(a page with the session token, or, for the CLI, to the console's page where the person
confirms that the command line on this computer signs in: decision 0095), and ``POST
/token`` trades the one-time code that the confirmation sends to the CLI's loopback
listener for the session.
"""

from html import escape
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from onceonly.hub.audit.dependencies import CurrentAudit, audited
from onceonly.hub.console import cookies, oidc_sign_in
from onceonly.hub.dependencies import (
    ClockDep,
    HubDep,
    JtiRegisterDep,
    KeysDep,
    SessionsDep,
    SettingsDep,
)
from onceonly.hub.kit.jsonbody import json_body
from onceonly.hub.kit.problems import Unavailable, problems
from onceonly.hub.kit.strict import DecimalDigits
from onceonly.hub.people import oidc
from onceonly.hub.people.exceptions import SignInsBusy
from onceonly.hub.people.schemas import SessionOut

router = APIRouter(prefix="/v1/people/oidc", tags=["people"])
_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
_PAGE_POLICY = {"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'"}
QueryValue = Annotated[str | None, Query(max_length=2048)]


async def _provider(hub: HubDep) -> oidc.Provider:
    """The configured provider, made at start and kept for the app's lifetime (it holds
    the cached discovery document and keys); refused when none is configured."""
    if hub.oidc_provider is None:
        return oidc.Provider.from_settings(hub.settings, http=hub.http)  # refuses, saying why
    return hub.oidc_provider


ProviderDep = Annotated[oidc.Provider, Depends(_provider)]


@router.get(
    "/start",
    status_code=302,
    response_class=RedirectResponse,
    # SignInsBusy: too many sign-ins wait for the provider (decision 0068)
    responses=problems(oidc.OidcNotConfigured, oidc.OidcProviderUnavailable, SignInsBusy),
)
async def start(
    provider: ProviderDep,
    settings: SettingsDep,
    keys: KeysDep,
    clock: ClockDep,
    cli_port: Annotated[int | None, Query(ge=1024, le=65535), DecimalDigits] = None,
    cli_state: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{16,128}$")] = None,
) -> Response:
    url, sealed_login = await oidc.start(
        provider, keys=keys, settings=settings, cli_port=cli_port, cli_state=cli_state, clock=clock
    )
    response = RedirectResponse(url, status_code=302, headers=_NO_STORE)
    # The console's rule for a login in progress (__Host- and Path=/ in production, so
    # that no sibling host can set it: decision 0068), under a name of its own.
    cookies.put_login(
        response,
        cookies.API_LOGIN,
        sealed_login,
        max_age=oidc.LOGIN_LIFETIME,
        production=settings.is_production,
    )
    return response


@router.get(
    "/callback",
    response_class=HTMLResponse,
    responses={
        303: {
            "description": "a command-line sign-in: to the page where the person confirms"
            " it, which then sends a one-time code to the CLI's loopback listener"
        },
        **problems(
            oidc.OidcNotConfigured,
            oidc.OidcStateInvalid,
            oidc.OidcProviderRefused,
            oidc.OidcProviderUnavailable,
            oidc.OidcIdTokenInvalid,
            oidc.OidcAccountNotLinked,
            oidc.OidcAccountDisabled,
            SignInsBusy,  # too many sign-ins wait for the provider (decision 0068)
            Unavailable,  # the single-use register (the sign-in's state)
        ),
    },
    dependencies=[Depends(audited("person.sign-in"))],
)
async def callback(
    request: Request,
    provider: ProviderDep,
    settings: SettingsDep,
    keys: KeysDep,
    scope: CurrentAudit,
    clock: ClockDep,
    sessions: SessionsDep,
    jti_register: JtiRegisterDep,
    state: QueryValue = None,
    code: QueryValue = None,
    error: QueryValue = None,
) -> Response:
    production = settings.is_production
    signed_in = await oidc.finish(
        provider,
        cookie=cookies.read_login(request, cookies.API_LOGIN, production=production),
        query=oidc.CallbackQuery(state=state, code=code, error=error),
        sessions=sessions,
        jti_register=jti_register,
        keys=keys,
        settings=settings,
        scope=scope,
        clock=clock,
    )
    if isinstance(signed_in, oidc.CliConfirmation):
        # The sign-in waits for the person's yes, in place of the login in the cookie.
        waiting = RedirectResponse(oidc_sign_in.CLI_CONFIRM, status_code=303, headers=_NO_STORE)
        cookies.put_login(
            waiting,
            cookies.API_LOGIN,
            signed_in.seal(keys),
            max_age=oidc.CONFIRM_LIFETIME,
            production=production,
        )
        return waiting
    page = _token_page(signed_in.session)
    response = HTMLResponse(page, headers={**_NO_STORE, **_PAGE_POLICY})
    cookies.remove_login(response, cookies.API_LOGIN, production=production)
    return response


@router.post(
    "/token",
    response_model=SessionOut,
    # Unavailable: the single-use register (the one-time code)
    responses=problems(oidc.OidcNotConfigured, oidc.OidcCodeInvalid, Unavailable),
    dependencies=[Depends(audited("person.sign-in-code"))],
)
async def token(
    request: Request,
    response: Response,
    _: ProviderDep,
    body: Annotated[oidc.OidcCodeIn, Depends(json_body(oidc.OidcCodeIn))],
    keys: KeysDep,
    scope: CurrentAudit,
    clock: ClockDep,
    jti_register: JtiRegisterDep,
) -> SessionOut:
    response.headers.update(_NO_STORE)
    return await oidc.redeem(
        body.code, keys=keys, jti_register=jti_register, scope=scope, clock=clock
    )


def _token_page(session: SessionOut) -> str:
    """The session token for copy and paste, shown once (the page is not cached)."""
    username = escape(session.person.username)
    until = escape(session.expires_at.isoformat(timespec="seconds"))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Signed in to Onceonly</title></head><body>"
        f"<h1>Signed in as {username}</h1>"
        f"<p>Your sign-in token, valid until {until}. Copy it now: it is shown only once."
        " Use it as <code>Authorization: Bearer &lt;token&gt;</code>, or set"
        " <code>ONCEONLY_TOKEN</code> for the <code>onceonly</code> command"
        " (or run <code>onceonly login --oidc</code> instead).</p>"
        f'<pre id="token">{escape(session.token)}</pre></body></html>'
    )
