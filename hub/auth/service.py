"""Authentication rules: issue access tokens to clients, recognize them on requests."""

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from hub.access import service as access
from hub.audit.service import AuditScope
from hub.auth import repository, tokens
from hub.auth.exceptions import (
    InsufficientScope,
    InvalidClient,
    InvalidScope,
    InvalidToken,
    InvalidTokenRequest,
    UnsupportedGrantType,
)
from hub.auth.schemas import ServerMetadata, TokenResponse
from hub.config import Settings
from hub.keys import HubKeys
from hub.registry import jwks as jwks_rules
from hub.registry import repository as registry
from hub.registry.models import Client

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SIGNING_ALGORITHMS = ["ES256", "EdDSA", "PS256"]
_MAX_FORM_BYTES = 16 * 1024


@dataclass(frozen=True)
class Caller:
    """A client recognized by its access token."""

    client_id: str
    department: str
    scopes: frozenset[str]

    def require_scope(self, scope: str) -> None:
        if scope not in self.scopes:
            raise InsufficientScope(scope)


def parse_token_form(raw: bytes, content_type: str) -> dict[str, str]:
    """RFC 6749 §3.2: form-encoded, and no parameter may be sent twice."""
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise InvalidTokenRequest("the token request must be application/x-www-form-urlencoded")
    if len(raw) > _MAX_FORM_BYTES:
        raise InvalidTokenRequest(f"the token request is larger than {_MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=bool(raw))
    except (UnicodeDecodeError, ValueError):
        raise InvalidTokenRequest("the token request is not a valid form") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise InvalidTokenRequest(f"the parameter {name} is sent more than once")
        form[name] = value
    return form


async def issue_token(
    session: AsyncSession,
    *,
    engine: AsyncEngine,
    form: dict[str, str],
    settings: Settings,
    keys: HubKeys,
    scope: AuditScope,
) -> TokenResponse:
    """The client credentials grant (RFC 6749 §4.4) with private_key_jwt (RFC 7523 §2.2)."""
    _check_grant_type(form.get("grant_type"))
    now = int(time.time())
    client = await _authenticate_client(
        session, engine=engine, form=form, settings=settings, now=now
    )
    scope.note(client=client.client_id, department=client.department_id)
    granted = await access.scopes_for(session, department=client.department_id)
    scopes = _requested_scopes(form.get("scope"), granted)
    token = tokens.issue_access_token(
        key=keys.signing,
        issuer=settings.issuer,
        client_id=client.client_id,
        department=client.department_id,
        scopes=scopes,
        now=now,
        lifetime=settings.access_token_lifetime,
    )
    await scope.record_success()
    return TokenResponse(
        access_token=token,
        token_type="Bearer",
        expires_in=settings.access_token_lifetime,
        scope=" ".join(sorted(scopes)),
    )


def _check_grant_type(grant_type: str | None) -> None:
    """RFC 6749 §5.2: a missing parameter is ``invalid_request``; an unknown grant,
    ``unsupported_grant_type``."""
    if not grant_type:
        raise InvalidTokenRequest("the grant_type parameter is required")
    if grant_type != "client_credentials":
        raise UnsupportedGrantType("only the client_credentials grant is supported")


def _requested_scopes(requested: str | None, granted: frozenset[str]) -> frozenset[str]:
    if requested is None:
        return granted
    wanted = frozenset(requested.split())
    beyond = wanted - granted
    if beyond:
        raise InvalidScope(f"the department holds no grant for: {' '.join(sorted(beyond))}")
    return wanted


async def _authenticate_client(
    session: AsyncSession,
    *,
    engine: AsyncEngine,
    form: dict[str, str],
    settings: Settings,
    now: int,
) -> Client:
    if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
        raise InvalidClient("authenticate with private_key_jwt (client_assertion_type jwt-bearer)")
    assertion = form.get("client_assertion", "")
    try:
        _, unverified = tokens.peek_header_and_claims(assertion)
    except ValueError as error:
        raise InvalidClient(f"the client assertion is not a JWT: {error}") from None
    client_id = unverified.get("sub")
    if not isinstance(client_id, str) or form.get("client_id", client_id) != client_id:
        raise InvalidClient("the assertion's sub must be the client id")
    client = await registry.get_client(session, client_id)
    if client is None or client.status != "active":
        raise InvalidClient("unknown or disabled client")
    claims = tokens.verify_client_assertion(
        assertion,
        client_id=client_id,
        client_keys=jwks_rules.key_set(client.jwks),
        issuer=settings.issuer,
        now=now,
        skew=settings.clock_skew,
    )
    key = repository.jti_key(kind="assertion", issuer=client_id, jti=claims.jti)
    expires = datetime.fromtimestamp(claims.expires_at + settings.clock_skew, UTC)
    if not await repository.spend_jti(engine, key=key, expires_at=expires, now=datetime.now(UTC)):
        raise InvalidClient("the client assertion was used before (jti replay)")
    return client


def caller_from_bearer(
    *, authorization: str | None, settings: Settings, keys: HubKeys, scope: AuditScope | None
) -> Caller:
    """The caller named by a valid access token (RFC 6750 §2.1), checked without I/O.

    The token proves who the client was when it was issued; whether the client is
    still active is the caller's check (``caller_from_token``, or the exchange's
    own query).
    """
    if not authorization:
        raise InvalidToken("an access token is required", token_sent=False)
    kind, _, token = authorization.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        raise InvalidToken("use the Authorization: Bearer scheme")
    claims = tokens.verify_access_token(
        token.strip(),
        keys=keys.verification_keys(),
        issuer=settings.issuer,
        now=int(time.time()),
        skew=settings.clock_skew,
    )
    if scope is not None:
        scope.note(client=claims.client_id, department=claims.department)
    return Caller(client_id=claims.client_id, department=claims.department, scopes=claims.scopes)


def require_active_client(caller: Caller, *, department: str | None, status: str | None) -> None:
    """Refuse a token whose client was disabled or moved since the token was issued."""
    if status != "active" or department != caller.department:
        raise InvalidToken("the token's client is no longer active")


async def caller_from_token(
    session: AsyncSession,
    *,
    authorization: str | None,
    settings: Settings,
    keys: HubKeys,
    scope: AuditScope | None,
) -> Caller:
    """The caller of a resource request, with its client checked in the registry."""
    caller = caller_from_bearer(
        authorization=authorization, settings=settings, keys=keys, scope=scope
    )
    client = await registry.get_client(session, caller.client_id)
    require_active_client(
        caller,
        department=client.department_id if client else None,
        status=client.status if client else None,
    )
    return caller


async def server_metadata(session: AsyncSession, *, settings: Settings) -> ServerMetadata:
    """RFC 8414 §2 metadata, complete for what this hub supports."""
    issuer = settings.issuer.rstrip("/")
    return ServerMetadata(
        issuer=settings.issuer,
        token_endpoint=f"{issuer}/oauth/token",
        jwks_uri=f"{issuer}/.well-known/jwks.json",
        grant_types_supported=["client_credentials"],
        token_endpoint_auth_methods_supported=["private_key_jwt"],
        token_endpoint_auth_signing_alg_values_supported=SIGNING_ALGORITHMS,
        response_types_supported=[],
        scopes_supported=await access.all_read_scopes(session),
        service_documentation=f"{issuer}/docs",
    )
