"""The citizen's "who used my data" page (issue 13, decision 0032).

A citizen signs in with the citizens' OpenID Connect provider (``citizen_oidc_*``),
through ``people.oidc``'s flow (PKCE, ``state``, ``nonce``, the ID token checked) with
this page's callback; the person's identifier is a claim of the verified ID token
(``citizen_identifier_claim``). The hub keeps only its pseudonym, sealed in a cookie
of its own (``onceonly-citizen``, ``SameSite=Strict``, ``citizen_session_lifetime``):
not a person's session, so it opens no staff page, and these pages read no staff
session. Each look at the page is a ``citizen.query`` audit entry, as the API's
citizen portal's is; the sign-in is ``citizen.sign-in``.
"""

from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from onceonly.hub.audit.request_scope import open_audit_scope
from onceonly.hub.audit.service import AuditScope
from onceonly.hub.auth import repository as auth_repository
from onceonly.hub.citizen import service as citizens
from onceonly.hub.console import cookies, csrf, forms, oidc_sign_in, pages, rendering, views
from onceonly.hub.console.dependencies import Visit, VisitDep
from onceonly.hub.console.exceptions import FormRefused
from onceonly.hub.dependencies import HubDep
from onceonly.hub.keys import KeyLabel
from onceonly.hub.kit.problems import HubError
from onceonly.hub.people import oidc
from onceonly.hub.runtime import Hub

router = APIRouter(include_in_schema=False)
HOME = "/citizen"
START = "/citizen/sign-in"
CALLBACK = "/citizen/sign-in/callback"
SIGN_OUT = "/citizen/sign-out"
QueryValue = Annotated[str | None, Query(max_length=2048)]
PROOF_STATUSES = {
    "verified": views.N_("In the signed log"),
    "pending": views.N_("Waiting for the next signature"),
    "failed": views.N_("Could not be verified"),
}


async def _citizen_of(request: Request, hub: HubDep) -> citizens.CitizenSession | None:
    """The citizen's live sign-in: sealed by the hub, not expired, and not ended by
    signing out (a copy of the cookie taken before opens nothing: decision 0058)."""
    production = hub.settings.is_production
    sealed = cookies.read(request, cookies.CITIZEN, production=production)
    citizen = citizens.session_of(sealed, keys=hub.keys, now=int(hub.clock.time()))
    if citizen is None or sealed is None:
        return None
    used = auth_repository.used_table()
    async with hub.sessions() as session:
        query = sa.select(used.c.key).where(used.c.key == _spent_key(sealed, hub=hub))
        signed_out = (await session.execute(query)).first() is not None
    return None if signed_out else citizen


def _spent_key(sealed: str, *, hub: Hub) -> str:
    """The key under which signing out spends a citizen's sealed sign-in in the hub's
    register of single-use identifiers (decision 0058), a kind of its own."""
    return auth_repository.jti_key(kind="citizen-sign-in", issuer=hub.settings.issuer, jti=sealed)


CitizenDep = Annotated[citizens.CitizenSession | None, Depends(_citizen_of)]


def _provider(hub: Hub) -> oidc.Provider | None:
    return hub.citizen_oidc_provider


def _citizen_visit(visit: Visit, hub: Hub, citizen: citizens.CitizenSession | None) -> Visit:
    """The visit as a citizen's page sees it: no staff person, whatever other cookie
    the browser holds, and forms bound to the citizen's sign-in."""
    token = visit.csrf_token
    if citizen is not None:
        key = hub.keys.derived(KeyLabel.CONSOLE_CSRF)
        binding = citizens.session_binding(citizen)
        token = csrf.token_for(key, session_hash=binding, pre_session=None)
    return replace(visit, principal=None, account=None, session_token=None, csrf_token=token)


def _start_page(
    request: Request,
    visit: Visit,
    provider: oidc.Provider,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: object,
) -> Response:
    context = {"errors": [], "ended": False, "signed_out": False, **context}
    return rendering.render(
        request,
        visit,
        "citizen/sign_in.html",
        status=status,
        provider=oidc_sign_in.provider_name(provider),
        headers=headers or {},
        **context,
    )


@router.get(HOME)
async def own_accesses(
    request: Request, visit: VisitDep, hub: HubDep, citizen: CitizenDep
) -> Response:
    provider = _provider(hub)
    seen = _citizen_visit(visit, hub, citizen)
    if provider is None:
        return rendering.render(request, seen, "not_found.html", status=404)
    if citizen is None:
        ended = cookies.read(request, cookies.CITIZEN, production=visit.production) is not None
        signed_out = "signed_out" in request.query_params
        return _start_page(request, seen, provider, ended=ended, signed_out=signed_out)
    scope = open_audit_scope(request, "citizen.query", log=hub.audit_log)
    async with hub.read_sessions() as session:
        accesses = await citizens.own_accesses(
            session,
            citizen=citizen,
            settings=hub.settings,
            verifier=hub.checkpointer.signer.verifier,
            scope=scope,
        )
    return rendering.render(
        request,
        seen,
        "citizen/accesses.html",
        accesses=accesses,
        proof_statuses=PROOF_STATUSES,
    )


@router.get(START)
async def start(request: Request, visit: VisitDep, hub: HubDep) -> Response:
    provider = _provider(hub)
    seen = _citizen_visit(visit, hub, None)
    if provider is None:
        return rendering.render(request, seen, "not_found.html", status=404)
    try:
        return await oidc_sign_in.start_login(
            provider,
            hub=hub,
            callback=CALLBACK,
            cookie=cookies.CITIZEN_LOGIN,
            production=visit.production,
        )
    except oidc_sign_in.START_REFUSALS as error:
        errors = [views.FieldError("sign-in", oidc_sign_in.refusal_message(error))]
        return _start_page(
            request, seen, provider, status=error.status, errors=errors, headers=error.headers
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
    provider = _provider(hub)
    seen = _citizen_visit(visit, hub, None)
    if provider is None:
        return rendering.render(request, seen, "not_found.html", status=404)
    scope = open_audit_scope(request, "citizen.sign-in", log=hub.audit_log)
    try:
        sealed = await _signed_in(
            request, provider, hub=hub, scope=scope, query=(state, code, error)
        )
    except HubError as refused:
        if scope.owes_failure(refused):
            await scope.record_failure(refused)
        errors = [views.FieldError("sign-in", oidc_sign_in.refusal_message(refused))]
        response = _start_page(
            request, seen, provider, status=refused.status, errors=errors, headers=refused.headers
        )
    else:
        response = rendering.render(request, seen, "signed_in.html", next=HOME)
        cookies.put(
            response,
            cookies.CITIZEN,
            sealed,
            max_age=hub.settings.citizen_session_lifetime,
            production=visit.production,
        )
    cookies.remove_login(response, cookies.CITIZEN_LOGIN, production=visit.production)
    return response


async def _signed_in(
    request: Request,
    provider: oidc.Provider,
    *,
    hub: Hub,
    scope: AuditScope,
    query: tuple[str | None, str | None, str | None],
) -> str:
    """The sealed citizen sign-in, once the provider's answer holds (audited)."""
    state, code, error = query
    claims, _ = await oidc.verified_claims(
        provider,
        cookie=cookies.read_login(
            request, cookies.CITIZEN_LOGIN, production=hub.settings.is_production
        ),
        query=oidc.CallbackQuery(state=state, code=code, error=error),
        jti_register=hub.jti_register,
        keys=hub.keys,
        redirect_uri=oidc_sign_in.redirect_uri(hub, CALLBACK),
        skew=hub.settings.clock_skew,
        clock=hub.clock,
    )
    identifier = citizens.identifier_in(claims, claim=hub.settings.citizen_identifier_claim)
    scope.note(subject=hub.keys.pseudonym(identifier))
    await scope.record_success()
    return citizens.start_session(
        identifier=identifier, keys=hub.keys, settings=hub.settings, now=int(hub.clock.time())
    )


@router.post(SIGN_OUT)
async def sign_out(request: Request, hub: HubDep, citizen: CitizenDep) -> Response:
    """Ends the citizen's sign-in at the hub (audited ``citizen.sign-out``) and removes
    its cookie; CSRF-checked."""
    production = hub.settings.is_production
    try:
        values = forms.fields(request.headers.get("content-type"), await request.body())
    except forms.MalformedForm:
        raise FormRefused(400) from None
    key = hub.keys.derived(KeyLabel.CONSOLE_CSRF)
    binding = citizens.session_binding(citizen) if citizen is not None else None
    if not csrf.token_holds(key, values.get("csrf_token"), session_hash=binding, pre_session=None):
        raise FormRefused(403)
    sealed = cookies.read(request, cookies.CITIZEN, production=production)
    if citizen is not None and sealed is not None:
        await _end_at_the_hub(request, hub, citizen=citizen, sealed=sealed)
    response = pages.redirect(HOME + "?signed_out=1", production=production)
    cookies.remove(response, cookies.CITIZEN, production=production)
    return response


async def _end_at_the_hub(
    request: Request, hub: Hub, *, citizen: citizens.CitizenSession, sealed: str
) -> None:
    """Refuse the sealed sign-in from now on, wherever a copy of it is: spent in the
    register of single-use identifiers (committed before the answer, purged once the
    cookie would have expired anyway; decision 0058), then audited."""
    scope = open_audit_scope(request, "citizen.sign-out", log=hub.audit_log)
    scope.note(subject=citizen.pseudonym)
    expires_at = datetime.fromtimestamp(citizen.expires, UTC)
    await hub.jti_register.spend(_spent_key(sealed, hub=hub), expires_at=expires_at)
    await scope.record_success()
