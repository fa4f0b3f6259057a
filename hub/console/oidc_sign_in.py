"""People's sign-in to the console with the OpenID Connect provider (docs/console.md).

The flow is ``people.oidc``'s, the API's own (authorization code, PKCE S256, ``state``,
``nonce``, the same ID token checks, the same linking rules and the same
``person.sign-in`` audit entries), with the console's callback as redirect URI:
register ``{issuer}/sign-in/oidc/callback`` at the provider beside the API's. The
callback starts a console session exactly as a password does: the session cookie
(``SameSite=Strict``) and a page that goes on to the catalogue. The page, not a
redirect: a browser does not send a Strict cookie on a redirect chain that began at
another site (the provider), so the next page is reached from the hub's own page.

The command line's sign-in (``onceonly login --oidc``, the API's flow) comes back here
too, to :data:`CLI_CONFIRM`: the person confirms that the command line on this
computer signs in before its one-time code goes to the loopback port (decision 0095).
Any web page can send a browser through a sign-in at a provider where the person is
signed in already; without this page, the code went to whoever listened on the port
that page chose. The form's token is the waiting sign-in's own (sealed in the API's
login cookie), not the console's CSRF binding: the visitor's console session cookie is
Strict, so it is missing from the page reached from the provider and present on the
form's POST, and a token bound to it would not hold.
"""

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from onceonly.hub.audit.request_scope import open_audit_scope
from onceonly.hub.console import cookies, forms, pages, rendering, views
from onceonly.hub.console.dependencies import Visit, VisitDep
from onceonly.hub.dependencies import HubDep
from onceonly.hub.kit.problems import HubError
from onceonly.hub.people import oidc
from onceonly.hub.people.exceptions import SignInsBusy
from onceonly.hub.runtime import Hub

router = APIRouter(include_in_schema=False)
START = "/sign-in/oidc"
CALLBACK = "/sign-in/oidc/callback"
CLI_CONFIRM = "/sign-in/oidc/command-line"  # the person confirms a CLI's sign-in
HOME = views.CATALOGUE.href
QueryValue = Annotated[str | None, Query(max_length=2048)]

# What each refusal tells the person (the problem's detail stays in the audit log).
REFUSALS = {
    oidc.OidcStateInvalid: views.N_("The sign-in took too long, or was already used. Start again."),
    oidc.OidcProviderRefused: views.N_("The identity provider did not sign you in."),
    oidc.OidcProviderUnavailable: views.N_(
        "The identity provider is not answering. Try again later."
    ),
    oidc.OidcIdTokenInvalid: views.N_(
        "The identity provider's answer could not be checked. Start again."
    ),
    oidc.OidcAccountNotLinked: views.N_(
        "No account on this hub is linked to your identity. Ask an administrator to link it."
    ),
    oidc.OidcAccountDisabled: views.N_("Your account is disabled."),
    # Too many sign-ins wait for the provider (decision 0068): what a password sign-in
    # the hub has no place for is told (decision 0063).
    SignInsBusy: views.N_("The hub is busy checking other sign-ins: try again in a moment"),
}
# What the start may answer instead of going to the provider (a discovery document it
# must fetch: the provider failed, or too many sign-ins wait for it).
START_REFUSALS = (oidc.OidcProviderUnavailable, SignInsBusy)
REFUSAL_FIELD = "oidc-sign-in"


def provider_name(provider: oidc.Provider) -> str:
    """How the sign-in page names the provider: its issuer's host name."""
    return urlsplit(provider.issuer).hostname or provider.issuer


def refusal_message(error: HubError) -> str:
    return next(
        (message for kind, message in REFUSALS.items() if isinstance(error, kind)),
        REFUSALS[oidc.OidcProviderRefused],
    )


def redirect_uri(hub: Hub, callback: str) -> str:
    return hub.settings.issuer.rstrip("/") + callback


def sign_in_form(
    request: Request,
    visit: Visit,
    hub: Hub,
    *,
    status: int = 200,
    errors: list[views.FieldError] | None = None,
    values: dict[str, str] | None = None,
    next: str = HOME,
    notice: str = "",
    headers: dict[str, str] | None = None,
) -> Response:
    """The sign-in page: the password form, and "Sign in with …" when a provider is set."""
    provider = hub.oidc_provider
    return rendering.render(
        request,
        visit,
        "sign_in.html",
        status=status,
        errors=errors or [],
        values=values or {},
        next=next,
        request_notice=notice,
        oidc_provider=provider_name(provider) if provider is not None else None,
        headers=headers or {},
    )


async def start_login(
    provider: oidc.Provider, *, hub: Hub, callback: str, cookie: str, production: bool
) -> Response:
    """302 to the provider, with the sealed login in the login cookie ``cookie``
    (``cookies.OIDC_LOGIN`` or ``cookies.CITIZEN_LOGIN``) that ``callback`` opens."""
    url, sealed = await oidc.start(
        provider,
        keys=hub.keys,
        settings=hub.settings,
        cli_port=None,
        cli_state=None,
        clock=hub.clock,
        redirect_uri=redirect_uri(hub, callback),
    )
    headers = {**pages.security_headers(production=production), "Cache-Control": "no-store"}
    response = RedirectResponse(url, status_code=302, headers=headers)
    cookies.put_login(response, cookie, sealed, max_age=oidc.LOGIN_LIFETIME, production=production)
    return response


@router.get(START)
async def start(request: Request, visit: VisitDep, hub: HubDep) -> Response:
    if hub.oidc_provider is None:
        return rendering.render(request, visit, "not_found.html", status=404)
    try:
        return await start_login(
            hub.oidc_provider,
            hub=hub,
            callback=CALLBACK,
            cookie=cookies.OIDC_LOGIN,
            production=visit.production,
        )
    except START_REFUSALS as error:
        errors = [views.FieldError(REFUSAL_FIELD, refusal_message(error))]
        return sign_in_form(
            request, visit, hub, status=error.status, errors=errors, headers=error.headers
        )


@router.get(CALLBACK)
async def callback(
    request: Request,
    visit: VisitDep,
    hub: HubDep,
    state: QueryValue = None,
    code: QueryValue = None,
    error: QueryValue = None,
) -> Response:
    if hub.oidc_provider is None:
        return rendering.render(request, visit, "not_found.html", status=404)
    scope = open_audit_scope(request, "person.sign-in", log=hub.audit_log)
    try:
        signed = await oidc.finish(
            hub.oidc_provider,
            cookie=cookies.read_login(request, cookies.OIDC_LOGIN, production=visit.production),
            query=oidc.CallbackQuery(state=state, code=code, error=error),
            sessions=hub.sessions,
            jti_register=hub.jti_register,
            keys=hub.keys,
            settings=hub.settings,
            scope=scope,
            clock=hub.clock,
            redirect_uri=redirect_uri(hub, CALLBACK),
        )
        if not isinstance(signed, oidc.SignedIn):  # the API's login cookie, planted here
            raise oidc.OidcStateInvalid(
                "this sign-in was begun for the command line, not the console: start again"
            )
    except HubError as refused:
        if scope.owes_failure(refused):
            await scope.record_failure(refused)
        errors = [views.FieldError(REFUSAL_FIELD, refusal_message(refused))]
        response = sign_in_form(
            request, visit, hub, status=refused.status, errors=errors, headers=refused.headers
        )
    else:
        response = rendering.render(request, visit, "signed_in.html", next=HOME)
        cookies.put_session(
            response,
            signed.session.token,
            lifetime=hub.settings.session_lifetime,
            production=visit.production,
        )
        cookies.remove(response, cookies.PRE_SESSION, production=visit.production)
    cookies.remove_login(response, cookies.OIDC_LOGIN, production=visit.production)
    return response


@router.get(CLI_CONFIRM)
async def cli_confirmation(request: Request, visit: VisitDep, hub: HubDep) -> Response:
    """ "Sign in the command line on this computer?": the form, or why there is none."""
    sealed = cookies.read_login(request, cookies.API_LOGIN, production=visit.production)
    try:
        pending = oidc.CliConfirmation.open(sealed, keys=hub.keys, now=int(hub.clock.time()))
    except oidc.OidcConfirmationRefused:
        return rendering.render(request, visit, "cli_sign_in.html", status=400, pending=None)
    return rendering.render(request, visit, "cli_sign_in.html", pending=pending)


@router.post(CLI_CONFIRM)
async def confirm_cli(request: Request, visit: VisitDep, hub: HubDep) -> Response:
    """The person's yes: the one-time code goes to the CLI's loopback listener, from a
    page (a redirect after a form to another origin is what ``form-action 'self'``
    forbids). Audited ``person.sign-in``, its refusal too."""
    scope = open_audit_scope(request, "person.sign-in", log=hub.audit_log)
    try:
        form = forms.fields(request.headers.get("content-type"), await request.body())
    except forms.MalformedForm:
        form = {}
    try:
        loopback = await oidc.confirm(
            cookies.read_login(request, cookies.API_LOGIN, production=visit.production),
            presented=form.get("csrf_token"),
            sessions=hub.sessions,
            jti_register=hub.jti_register,
            keys=hub.keys,
            settings=hub.settings,
            scope=scope,
            clock=hub.clock,
        )
    except HubError as refused:
        if scope.owes_failure(refused):
            await scope.record_failure(refused)
        return rendering.render(
            request, visit, "cli_sign_in.html", status=refused.status, pending=None, refused=True
        )
    response = rendering.render(request, visit, "cli_sign_in.html", pending=None, loopback=loopback)
    cookies.remove_login(response, cookies.API_LOGIN, production=visit.production)
    return response
