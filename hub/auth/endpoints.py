"""OAuth routes: token (RFC 6749 §3.2), introspection (RFC 7662), revocation (RFC 7009),
metadata (RFC 8414), JWKS (RFC 7517), a client's own registration, and an
administrator's disabling (and enabling) of a client."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from onceonly.hub.access import service as access
from onceonly.hub.audit.dependencies import CurrentAudit, audited
from onceonly.hub.audit.exceptions import AuditUnavailable
from onceonly.hub.audit.request_scope import open_audit_scope
from onceonly.hub.audit.service import AuditScope
from onceonly.hub.auth import service
from onceonly.hub.auth.dependencies import CurrentCaller
from onceonly.hub.auth.exceptions import (
    ClientNotFound,
    ClientTokensOutstanding,
    InvalidClient,
    InvalidDpopProofGrant,
    InvalidScope,
    InvalidTokenRequest,
    TokenRequestsThrottled,
    UnsupportedGrantType,
    UseDpopNonceGrant,
)
from onceonly.hub.auth.schemas import (
    TOKEN_FORM,
    TOKEN_HOLDER_FORM,
    IntrospectionResponse,
    JwksIn,
    JwksOut,
    OwnClientOut,
    ServerMetadata,
    TokenResponse,
    form_body,
)
from onceonly.hub.dependencies import (
    ClockDep,
    HubDep,
    KeysDep,
    SessionDep,
    SettingsDep,
    WriteSessionDep,
)
from onceonly.hub.kit.jsonbody import json_body
from onceonly.hub.kit.problems import Unavailable, problems
from onceonly.hub.kit.rate_limit import source_of
from onceonly.hub.people.dependencies import AdministratorDep
from onceonly.hub.registry.exceptions import InvalidJwks
from onceonly.hub.registry.schemas import (
    CLIENT_ID_PATTERN,
    DEPARTMENT_ID_PATTERN,
    ClientList,
    ClientOut,
)

router = APIRouter(tags=["oauth"])
ClientId = Annotated[str, Path(pattern=CLIENT_ID_PATTERN)]

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1
_JWKS_CACHE = {"Cache-Control": "public, max-age=60"}  # well below a rotation's delay


@dataclass(frozen=True)
class _Form:
    """A request's form, read once for the limits and the endpoint: its fields and the
    client it names, or why it cannot be read (then no client is named)."""

    fields: dict[str, str]
    client_id: str | None
    unreadable: InvalidTokenRequest | None = None


async def _read_form(request: Request) -> _Form:
    """The form; one that cannot be read as a whole keeps what can be read of it, to
    name the client its refusal is about (``service.readable_part``)."""
    raw, content_type = await request.body(), request.headers.get("content-type", "")
    try:
        fields = service.parse_token_form(raw, content_type)
    except InvalidTokenRequest as unreadable:
        part = service.readable_part(raw, content_type)
        return _Form(fields=part, client_id=service.named_client(part), unreadable=unreadable)
    return _Form(fields=fields, client_id=service.named_client(fields))


async def _endpoint_request(
    request: Request,
    session: SessionDep,
    hub: HubDep,
    clock: ClockDep,
    form: _Form,
    *,
    action: str,
) -> tuple[service.EndpointRequest, AuditScope | None]:
    """The request as the OAuth endpoints read it, and its audit scope.

    A request that names no client (no ``client_id``, no client assertion that names
    one) is a decision about nobody: it is answered as any other and counted, but not
    audited (no scope). Every request that names a client is audited, whatever its
    answer, a form that cannot be read too (refused here): its entry names the client
    when the assertion in what can be read of it verifies.
    """
    endpoint, settings = request.url.path, hub.settings
    if form.unreadable is not None:
        if form.client_id is None:
            service.count_unnamed(endpoint)
            raise form.unreadable
        scope = open_audit_scope(request, action, log=hub.audit_log)
        await service.note_verified_client(
            session, form=form.fields, settings=settings, scope=scope, clock=clock
        )
        raise form.unreadable
    header = settings.tls_client_cert_header
    endpoint_request = service.EndpointRequest(
        form=form.fields,
        url=settings.issuer.rstrip("/") + endpoint,
        dpop_proofs=request.headers.getlist("dpop"),
        certificate=request.headers.get(header) if header else None,
        authorization="authorization" in request.headers,
    )
    if form.client_id is None:
        service.count_unnamed(endpoint)
        return endpoint_request, None
    return endpoint_request, open_audit_scope(request, action, log=hub.audit_log)


@asynccontextmanager
async def _limited(
    request: Request,
    session: SessionDep,
    hub: HubDep,
    clock: ClockDep,
    *,
    form: _Form,
    action: str,
) -> AsyncIterator[service.TokenAdmission]:
    """Let a request through its address's budget (``hub.token_limits``), or refuse
    it 429 before anything is verified; then account for its answer (decision 0051).
    Only the first such refusal of an address in a minute is audited (``action``,
    naming the client if it is registered); the metric counts all. A form that cannot
    be read names no client: it is refused as unreadable once admitted, at its
    address's expense. The admission is the token endpoint's, to check the client's
    own budget once the client has authenticated."""
    client_id = form.client_id
    address = request.client.host if request.client else "unknown"
    try:
        admission = hub.token_limits.admit(
            client_id=client_id,
            source=source_of(address),
            now=clock.monotonic(),
        )
    except TokenRequestsThrottled as refusal:
        if refusal.audited and client_id is not None:
            scope = open_audit_scope(request, action, log=hub.audit_log)
            await service.note_registered_client(session, client_id, scope=scope)
        raise
    try:
        yield admission
    except BaseException as error:
        admission.failed(error, now=clock.monotonic())
        raise
    admission.answered(now=clock.monotonic())


@router.post(
    "/oauth/token",
    response_model=TokenResponse,
    responses=problems(
        InvalidTokenRequest,
        UnsupportedGrantType,
        InvalidScope,
        InvalidDpopProofGrant,
        UseDpopNonceGrant,
        InvalidClient,
        TokenRequestsThrottled,
        AuditUnavailable,
        Unavailable,  # the single-use register (assertion and proof jtis)
    ),
    openapi_extra=form_body(TOKEN_FORM),
)
async def token(
    request: Request, session: SessionDep, hub: HubDep, clock: ClockDep
) -> JSONResponse:
    settings, keys, action = hub.settings, hub.keys, "token.issue"
    form = await _read_form(request)
    async with _limited(request, session, hub, clock, form=form, action=action) as admission:
        endpoint_request, scope = await _endpoint_request(
            request, session, hub, clock, form, action=action
        )
        answer = await service.issue_token(
            session,
            jtis=hub.jti_register,
            request=endpoint_request,
            settings=settings,
            keys=keys,
            scope=scope,
            clock=clock,
            scopes_of=lambda department: access.scopes_for(
                session, department=department, clock=clock
            ),
            admission=admission,
        )
    headers = _NO_STORE | service.dpop_nonce_header(settings, keys, clock=clock)
    return JSONResponse(answer.model_dump(), headers=headers)


@router.post(
    "/oauth/introspect",
    response_model=IntrospectionResponse,
    responses=problems(
        InvalidTokenRequest,
        InvalidClient,
        TokenRequestsThrottled,
        AuditUnavailable,
        Unavailable,  # the single-use register (the assertion's jti)
    ),
    openapi_extra=form_body(TOKEN_HOLDER_FORM),
)
async def introspect(
    request: Request, session: SessionDep, hub: HubDep, clock: ClockDep
) -> JSONResponse:
    action = "token.introspect"
    form = await _read_form(request)
    async with _limited(request, session, hub, clock, form=form, action=action):
        endpoint_request, scope = await _endpoint_request(
            request, session, hub, clock, form, action=action
        )
        answer = await service.introspect(
            session,
            jtis=hub.jti_register,
            request=endpoint_request,
            settings=hub.settings,
            keys=hub.keys,
            scope=scope,
            clock=clock,
        )
    return JSONResponse(answer.model_dump(exclude_none=True), headers=_NO_STORE)


@router.post(
    "/oauth/revoke",
    responses={
        200: {"description": "revoked, or nothing to revoke (RFC 7009 §2.2)", "content": {}},
        **problems(
            InvalidTokenRequest,
            InvalidClient,
            TokenRequestsThrottled,
            AuditUnavailable,
            Unavailable,  # the single-use register (the assertion's jti)
        ),
    },
    openapi_extra=form_body(TOKEN_HOLDER_FORM),
)
async def revoke(request: Request, session: SessionDep, hub: HubDep, clock: ClockDep) -> Response:
    action = "token.revoke"
    form = await _read_form(request)
    async with _limited(request, session, hub, clock, form=form, action=action):
        endpoint_request, scope = await _endpoint_request(
            request, session, hub, clock, form, action=action
        )
        await service.revoke(
            session,
            engine=hub.engine,
            jtis=hub.jti_register,
            request=endpoint_request,
            settings=hub.settings,
            keys=hub.keys,
            scope=scope,
            clock=clock,
        )
    return Response(status_code=200, headers=_NO_STORE)


@router.get("/.well-known/oauth-authorization-server", response_model=ServerMetadata)
async def metadata(session: SessionDep, settings: SettingsDep) -> ServerMetadata:
    scopes = await access.all_read_scopes(session)
    return service.server_metadata(settings=settings, scopes_supported=scopes)


@router.get("/.well-known/jwks.json", response_model=JwksOut)
async def jwks(keys: KeysDep) -> JSONResponse:
    return JSONResponse(keys.public_jwks(), headers=_JWKS_CACHE)


@router.get("/v1/clients/self", response_model=OwnClientOut, tags=["clients"])
async def own_client(caller: CurrentCaller, session: SessionDep) -> OwnClientOut:
    return await service.describe_own_client(session, caller=caller)


@router.put(
    "/v1/clients/self/jwks",
    response_model=OwnClientOut,
    tags=["clients"],
    responses=problems(InvalidJwks),
    dependencies=[Depends(audited("client.keys.put"))],
)
async def replace_own_jwks(
    caller: CurrentCaller,
    body: Annotated[JwksIn, Depends(json_body(JwksIn))],
    session: WriteSessionDep,
    scope: CurrentAudit,
) -> OwnClientOut:
    kids = await service.replace_own_jwks(
        session, caller=caller, jwks=body.model_dump(), scope=scope
    )
    return OwnClientOut(client_id=caller.client_id, department=caller.department, kids=kids)


@router.get("/v1/admin/clients", response_model=ClientList, tags=["administration"])
async def list_clients(
    _: AdministratorDep,
    session: SessionDep,
    department: Annotated[str | None, Query(pattern=DEPARTMENT_ID_PATTERN)] = None,
) -> ClientList:
    """Every registered client, or those of ``department``: standing and key ids."""
    return await service.list_clients(session, department=department)


@router.get(
    "/v1/admin/clients/{client_id}",
    response_model=ClientOut,
    tags=["administration"],
    responses=problems(ClientNotFound),
)
async def get_client(client_id: ClientId, _: AdministratorDep, session: SessionDep) -> ClientOut:
    return await service.describe_client(session, client_id=client_id)


@router.post(
    "/v1/admin/clients/{client_id}/disable",
    response_model=ClientOut,
    tags=["administration"],
    responses=problems(ClientNotFound),
    dependencies=[Depends(audited("registry.client.disable"))],
)
async def disable_client(
    client_id: ClientId,
    _: AdministratorDep,
    session: WriteSessionDep,
    settings: SettingsDep,
    scope: CurrentAudit,
    clock: ClockDep,
) -> ClientOut:
    return await service.set_client_standing(
        session, client_id=client_id, active=False, settings=settings, scope=scope, clock=clock
    )


@router.post(
    "/v1/admin/clients/{client_id}/enable",
    response_model=ClientOut,
    tags=["administration"],
    responses=problems(ClientNotFound, ClientTokensOutstanding),
    dependencies=[Depends(audited("registry.client.enable"))],
)
async def enable_client(
    client_id: ClientId,
    _: AdministratorDep,
    session: WriteSessionDep,
    settings: SettingsDep,
    scope: CurrentAudit,
    clock: ClockDep,
) -> ClientOut:
    """409 ``client-tokens-outstanding`` while tokens it held when disabled may live."""
    return await service.set_client_standing(
        session, client_id=client_id, active=True, settings=settings, scope=scope, clock=clock
    )
