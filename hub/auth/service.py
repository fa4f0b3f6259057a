"""Authorization server rules: client authentication, the token endpoint, introspection,
revocation, metadata, and a client's own keys.

- Client authentication: ``private_key_jwt`` (RFC 7523 §2.2) always;
  ``self_signed_tls_client_auth`` (RFC 8705 §2.2) when a TLS proxy forwards
  certificates (``tls_client_cert_header``).
- Token endpoint: client credentials (RFC 6749 §4.4), tokens bound to a DPoP key
  (RFC 9449 §5) or to the client's certificate (RFC 8705 §3).
- Introspection (RFC 7662) and revocation (RFC 7009), for the caller's own
  department's tokens only.
"""

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from onceonly.hub.audit.service import AuditScope
from onceonly.hub.auth import callers, certificates, dpop, nonces, repository, tokens
from onceonly.hub.auth.callers import Caller as Caller
from onceonly.hub.auth.callers import require_active_client as require_active_client
from onceonly.hub.auth.exceptions import (
    ClientAssertionAlgorithm,
    ClientAssertionUnreadable,
    ClientCertificateUnregistered,
    ClientNotAuthenticated,
    ClientNotFound,
    ClientSignatureInvalid,
    ClientTokensOutstanding,
    DisabledClient,
    InvalidClient,
    InvalidDpopProofGrant,
    InvalidScope,
    InvalidToken,
    InvalidTokenRequest,
    TokenRequestsThrottled,
    UnknownClient,
    UnsupportedGrantType,
)
from onceonly.hub.auth.jti_register import JtiRegister
from onceonly.hub.auth.schemas import (
    TOKEN_FORM,
    TOKEN_HOLDER_FORM,
    IntrospectionResponse,
    OwnClientOut,
    ServerMetadata,
    TokenResponse,
)
from onceonly.hub.auth.scopes import ScopesOf
from onceonly.hub.config import Settings
from onceonly.hub.keys import HubKeys, KeyLabel
from onceonly.hub.kit.clock import Clock, aware, rfc3339_ms
from onceonly.hub.kit.jws import peek_header_and_claims
from onceonly.hub.kit.problems import HubError
from onceonly.hub.kit.rate_limit import IPV6_NETWORK_SHARES, TokenBuckets, ipv6_networks
from onceonly.hub.metrics import TOKEN_REQUESTS_THROTTLED
from onceonly.hub.registry import jwks as jwks_rules
from onceonly.hub.registry import repository as registry
from onceonly.hub.registry.models import Client
from onceonly.hub.registry.schemas import ClientList, ClientOut
from onceonly.hub.registry.service import client_out

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SIGNING_ALGORITHMS = ["ES256", "Ed25519", "EdDSA", "PS256"]
_MAX_FORM_BYTES = 16 * 1024
# What the token, introspection and revocation endpoints read; anything else is ignored.
FORM_PARAMETERS = frozenset(TOKEN_FORM["properties"]) | frozenset(TOKEN_HOLDER_FORM["properties"])
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
UNNAMED_REQUESTS = Counter(
    "onceonly_oauth_unnamed_requests_total",
    "OAuth endpoint requests that named no client (answered, not audited)",
    ["endpoint"],
)


@dataclass(frozen=True)
class EndpointRequest:
    """What the token, introspection and revocation endpoints read from HTTP."""

    form: dict[str, str]
    url: str  # issuer + path: what a DPoP proof's htu must name
    dpop_proofs: list[str]
    certificate: str | None = None
    authorization: bool = False  # an Authorization header field was sent


@dataclass(frozen=True)
class AuthenticatedClient:
    client: Client
    certificate_x5t: str | None = None  # set when it authenticated with its certificate


def parse_token_form(raw: bytes, content_type: str) -> dict[str, str]:
    """The parameters the OAuth endpoints read (RFC 6749 §3.2): form-encoded UTF-8, no
    known parameter sent twice, and no control character in any value.

    RFC 6749 §3.2 ignores a parameter it does not recognize, so an unknown one is left
    out, however often it is sent. A control character (U+0000-U+001F, U+007F-U+009F)
    is no part of any identifier, scope or token: a value holding one is refused here,
    before anything reads it. A detail names only a known parameter, never what the
    caller wrote (decision 0075).
    """
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise InvalidTokenRequest("the request must be application/x-www-form-urlencoded")
    if len(raw) > _MAX_FORM_BYTES:
        raise InvalidTokenRequest(f"the request is larger than {_MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(
            raw.decode(), keep_blank_values=True, strict_parsing=bool(raw), errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidTokenRequest("the request is not a valid form of UTF-8 text") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        known = name in FORM_PARAMETERS
        if _CONTROL.search(value):
            which = f"the parameter {name}" if known else "a parameter"
            raise InvalidTokenRequest(f"{which} holds a control character")
        if not known:
            continue
        if name in form:
            raise InvalidTokenRequest(f"the parameter {name} is sent more than once")
        form[name] = value
    return form


def readable_part(raw: bytes, content_type: str) -> dict[str, str]:
    """Of a form that :func:`parse_token_form` refuses (too large, a parameter twice, a
    control character in a value, not UTF-8), the parameters it can still read: the
    first value of each known one that holds no control character. Only to name the
    client in the refusal's audit entry when its assertion verifies (``note_verified_
    client``); the request is refused whatever this finds."""
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return {}
    # as much as a form may hold, not the whole body: the request is not yet within its
    # address's budget (a review, helper-178: 16 MiB of "a=&" took 6 s to parse)
    text = raw[:_MAX_FORM_BYTES].decode(errors="replace")
    form: dict[str, str] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        if name in FORM_PARAMETERS and name not in form and not _CONTROL.search(value):
            form[name] = value
    return form


def named_client(form: dict[str, str]) -> str | None:
    """The client a request names: its ``client_id``, or the (unverified) ``sub`` or
    ``iss`` of its client assertion; None if it names none."""
    if form.get("client_id"):
        return form["client_id"]
    try:
        _, claims = peek_header_and_claims(form.get("client_assertion", ""))
    except ValueError:
        return None
    named = claims.get("sub") or claims.get("iss")
    return named if isinstance(named, str) and named else None


def count_unnamed(endpoint: str) -> None:
    """A request that names no client is a decision about nobody: it is answered as
    any other, counted (``onceonly_oauth_unnamed_requests_total``), never audited."""
    UNNAMED_REQUESTS.labels(endpoint).inc()


def _named(scope: AuditScope | None) -> AuditScope:
    """The audit scope of a request that authenticated a client. Every request that
    names a client has one (the endpoint opens it); one that names none never gets
    past authentication."""
    if scope is None:
        raise InvalidClient("authenticate with private_key_jwt (client_assertion_type jwt-bearer)")
    return scope


# --- the token endpoint ----------------------------------------------------------------


async def issue_token(
    session: AsyncSession,
    *,
    jtis: JtiRegister,
    request: EndpointRequest,
    settings: Settings,
    keys: HubKeys,
    scope: AuditScope | None,
    clock: Clock,
    scopes_of: ScopesOf,
    admission: "TokenAdmission",
) -> TokenResponse:
    """The client credentials grant (RFC 6749 §4.4), sender-constrained; audited in
    ``scope`` (None: the request names no client, and is not audited); within the
    authenticated client's budget (``admission``, decision 0051)."""
    try:
        _check_grant_type(request.form.get("grant_type"))
        proof = _token_proof(request, settings=settings, keys=keys, clock=clock)
    except HubError:
        if scope is not None:  # the entry names the client if its assertion verifies
            await note_verified_client(
                session, form=request.form, settings=settings, scope=scope, clock=clock
            )
        raise
    authenticated = await authenticate_client(
        session, jtis=jtis, request=request, settings=settings, scope=scope, clock=clock
    )
    client, audit = authenticated.client, _named(scope)
    admission.issuing(client.client_id, now=clock.monotonic())
    confirmation = _confirmation(proof, authenticated, settings=settings)
    if proof is not None:
        await _spend_token_proof(jtis, proof, settings=settings)
    granted = await scopes_of(client.department_id)
    scopes = _requested_scopes(request.form.get("scope"), granted)
    token = tokens.issue_access_token(
        key=keys.signing,
        issuer=settings.issuer,
        client_id=client.client_id,
        department=client.department_id,
        scopes=scopes,
        now=int(clock.time()),
        lifetime=settings.access_token_lifetime,
        confirmation=confirmation,
    )
    await audit.record_success()
    return TokenResponse(
        access_token=token,
        token_type="DPoP" if "jkt" in confirmation else "Bearer",
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


def _token_proof(
    request: EndpointRequest, *, settings: Settings, keys: HubKeys, clock: Clock
) -> dpop.Proof | None:
    """RFC 9449 §5: the proof of a token request (no ``ath``), or None if none was sent."""
    if not request.dpop_proofs:
        return None
    return callers.check_proof(
        request.dpop_proofs,
        method="POST",
        url=request.url,
        access_token=None,
        settings=settings,
        keys=keys,
        error=InvalidDpopProofGrant,
        clock=clock,
    )


def _confirmation(
    proof: dpop.Proof | None, authenticated: AuthenticatedClient, *, settings: Settings
) -> dict[str, str]:
    """The token's ``cnf``: the DPoP key, the certificate, or (only when the hub does
    not require sender-constrained tokens) nothing."""
    confirmation: dict[str, str] = {}
    if proof is not None:
        confirmation["jkt"] = proof.jkt
    if authenticated.certificate_x5t is not None:
        confirmation["x5t#S256"] = authenticated.certificate_x5t
    if not confirmation and settings.require_dpop:
        raise InvalidDpopProofGrant("this hub issues only DPoP-bound tokens: send a DPoP proof")
    return confirmation


async def _spend_token_proof(jtis: JtiRegister, proof: dpop.Proof, *, settings: Settings) -> None:
    key, expires = callers.proof_jti_key(proof), callers.proof_expiry(proof, settings)
    if not await jtis.spend(key, expires_at=expires):
        raise InvalidDpopProofGrant("the DPoP proof was used before (jti replay)")


# RFC 6749 §3.3: scope = scope-token *( SP scope-token ), scope-token = 1*NQCHAR
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*")


def _requested_scopes(requested: str | None, granted: frozenset[str]) -> frozenset[str]:
    """The scopes asked for, all of them held; every held one when none is asked for.
    A refusal never repeats what was asked (protocol.md §2.3): a scope is the caller's
    text, and RFC 6749 §5.2 allows an ``error_description`` few of its characters."""
    if not requested:  # RFC 6749 §3.1: a parameter without a value is as if omitted
        return granted
    if not _SCOPE.fullmatch(requested):
        raise InvalidScope(
            "the scope is not scope tokens separated by single spaces (RFC 6749 §3.3):"
            " none empty, each of printable ASCII but space, double quote and backslash"
        )
    wanted = frozenset(requested.split(" "))
    beyond = wanted - granted
    if beyond:
        raise InvalidScope(f"the department does not hold {len(beyond)} of the scopes asked for")
    return wanted


def dpop_nonce_header(settings: Settings, keys: HubKeys, *, clock: Clock) -> dict[str, str]:
    """The current nonce on every answer when nonces are on (RFC 9449 §8.2, §9)."""
    if not settings.dpop_nonce:
        return {}
    now = int(clock.time())
    nonce = nonces.current_nonce(
        keys.derived(KeyLabel.DPOP_NONCE), now=now, lifetime=settings.dpop_nonce_lifetime
    )
    return {"DPoP-Nonce": nonce}


# --- the OAuth endpoints' rate limits (decision 0051) ----------------------------------


# One audited refusal per address in this many seconds; the metric counts every one.
THROTTLE_AUDIT_EVERY = 60.0
_THROTTLED = {budget: TOKEN_REQUESTS_THROTTLED.labels(budget) for budget in ("client", "address")}


class TokenLimits:
    """The OAuth endpoints' two budgets in one hub process (decision 0051); made with
    the process's :class:`~onceonly.hub.runtime.Hub`.

    - ``issued``, by client id: the tokens issued to the client. It is read once the
      client has authenticated (:meth:`TokenAdmission.issuing`), never for a client
      a request only names: so only the holder of the client's key can spend it, and
      a 429 for it tells nobody else that a client id exists (a request naming one it
      cannot authenticate as is refused 401, as for a made-up id).
    - ``refused``, by source address (an IPv6 address's /64), one budget for the token,
      introspection and revocation endpoints, which all verify a client assertion:
      every request spends one before it is read further, and gets it back unless it
      is refused (4xx). Junk, unknown clients, failed authentications and a client's
      requests over its own budget cost their sender only. An IPv6 source spends one
      of its /56's and its /48's budgets too (``networks``, IPV6_NETWORK_SHARES).

    A refusal for an address's budget (429) spends nothing, so refusals cannot prolong
    themselves; a client's own budget refills however often anyone names it.
    """

    def __init__(self, settings: Settings) -> None:
        keys = settings.token_limit_keys
        self.issued: TokenBuckets[str] = TokenBuckets(
            capacity=settings.token_client_burst,
            per_second=settings.token_client_per_minute / 60,
            max_keys=keys,
        )
        burst, per_second = settings.token_address_burst, settings.token_address_per_minute / 60
        self.refused: TokenBuckets[str] = TokenBuckets(
            capacity=burst, per_second=per_second, max_keys=keys
        )
        self.networks: dict[int, TokenBuckets[str]] = {
            prefix: TokenBuckets(
                capacity=burst * share, per_second=per_second * share, max_keys=keys
            )
            for prefix, share in IPV6_NETWORK_SHARES.items()
        }

    def admit(self, *, client_id: str | None, source: str, now: float) -> "TokenAdmission":
        """Let a request through, its address's token taken (and its networks', for
        IPv6); or refuse it (:class:`TokenRequestsThrottled`), taking nothing. A
        refusal is audited only if the request names a client (``client_id``), and it
        is the first in a while under the budget that refused it."""
        budgets = self._address_budgets(source)
        for buckets, key, where in budgets:
            wait = buckets.wait(key, now=now)
            if wait > 0:
                audited = client_id is not None and buckets.report_due(
                    key, now=now, every=THROTTLE_AUDIT_EVERY
                )
                detail = (
                    f"too many refused requests from {where}"
                    if key in buckets
                    else "too many sources of refused requests at once"  # no room for it
                )
                raise _throttled(detail, wait, "address", audited)
        for buckets, key, _ in budgets:
            buckets.take(key, now=now)
        spent = tuple((buckets, key) for buckets, key, _ in budgets)
        return TokenAdmission(limits=self, spent=spent)

    def _address_budgets(self, source: str) -> list[tuple[TokenBuckets[str], str, str]]:
        """The budgets a request from ``source`` (``kit.rate_limit.source_of``) spends:
        its address's, and for an IPv6 /64 its /56's and its /48's."""
        budgets = [(self.refused, source, "this address")]
        for prefix, network in ipv6_networks(source):
            budgets.append((self.networks[prefix], network, f"this address's /{prefix}"))
        return budgets


def _throttled(detail: str, wait: float, budget: str, audited: bool) -> TokenRequestsThrottled:
    _THROTTLED[budget].inc()
    return TokenRequestsThrottled(detail, wait=wait, budget=budget, audited=audited)


@dataclass
class TokenAdmission:
    """A request :meth:`TokenLimits.admit` let through, until it is answered."""

    limits: TokenLimits
    spent: tuple[tuple[TokenBuckets[str], str], ...]  # the address's budgets, and keys
    client_id: str | None = None  # the authenticated client that spent a token of its budget

    def issuing(self, client_id: str, *, now: float) -> None:
        """``client_id`` has authenticated and asks for a token: spend one of its
        budget now, or refuse it 429 if the budget holds none. Spent here, before the
        token is made, with nothing awaited between the check and the spend, so that
        requests in flight together cannot all find the same token; given back if the
        request is not answered after all. Only a client that has authenticated gets
        here, so only its own requests can hold its budget. The refusal is the
        request's, audited with it (its scope names the client), and keeps its
        address's token as any refusal does."""
        wait = self.limits.issued.wait(client_id, now=now)
        if wait > 0:
            raise _throttled("too many access tokens for this client", wait, "client", True)
        self.limits.issued.take(client_id, now=now)
        self.client_id = client_id

    def answered(self, *, now: float) -> None:
        """The request was answered: its address's tokens back (a token request's
        client spent its own when it was issuing)."""
        self._give_back_address(now)

    def failed(self, error: BaseException, *, now: float) -> None:
        """The request was not answered: the client's token back if it took one (no
        token was issued); a refusal (4xx) keeps the address's token, the hub's own
        failure (5xx, anything unexpected) gives it back."""
        if self.client_id is not None:
            self.limits.issued.give_back(self.client_id, now=now)
        if not (isinstance(error, HubError) and error.status < 500):
            self._give_back_address(now)

    def _give_back_address(self, now: float) -> None:
        for buckets, key in self.spent:
            buckets.give_back(key, now=now)


async def note_registered_client(
    session: AsyncSession, client_id: str, *, scope: AuditScope
) -> None:
    """Name ``client_id`` in ``scope``'s entry if it is registered: for an audited
    refusal that is decided before the client is read (one per client or address a
    minute, so the read is bounded too)."""
    await _registered_client(session, client_id, scope=scope)


# --- client authentication -------------------------------------------------------------


async def authenticate_client(
    session: AsyncSession,
    *,
    jtis: JtiRegister,
    request: EndpointRequest,
    settings: Settings,
    scope: AuditScope | None,
    clock: Clock,
) -> AuthenticatedClient:
    """``private_key_jwt`` if an assertion is sent, else a forwarded certificate.

    An unknown client, a disabled one, and a signature or certificate that does not
    match are one answer (:data:`~onceonly.hub.auth.exceptions.CLIENT_NOT_AUTHENTICATED`), so
    that nobody learns which client ids exist; the audit entry, written here, keeps
    the cause as its reason, and names the client when it is registered.
    """
    try:
        authenticated = await _authenticate(
            session, jtis=jtis, request=request, settings=settings, scope=scope, clock=clock
        )
    except ClientNotAuthenticated as refusal:
        if scope is not None:
            await scope.record_failure(refusal)
        raise refusal.answer() from None
    if scope is not None:
        scope.client_authenticated()
    return authenticated


async def _authenticate(
    session: AsyncSession,
    *,
    jtis: JtiRegister,
    request: EndpointRequest,
    settings: Settings,
    scope: AuditScope | None,
    clock: Clock,
) -> AuthenticatedClient:
    form = request.form
    if "client_assertion_type" in form or "client_assertion" in form:
        if request.authorization:  # RFC 6749 §2.3: one method a request
            if scope is not None:  # the entry names the client if its assertion verifies
                await note_verified_client(
                    session, form=form, settings=settings, scope=scope, clock=clock
                )
            raise InvalidTokenRequest(
                "the request authenticates its client twice, with a client assertion and an"
                " Authorization header (RFC 6749 section 2.3): send the assertion alone"
            )
        client = await _private_key_jwt(
            session, jtis=jtis, form=form, settings=settings, scope=scope, clock=clock
        )
        return AuthenticatedClient(client=client)
    if settings.tls_client_cert_header is not None and request.certificate:
        return await _self_signed_tls(
            session, form=form, certificate=request.certificate, scope=scope
        )
    raise InvalidClient("authenticate with private_key_jwt (client_assertion_type jwt-bearer)")


async def _private_key_jwt(
    session: AsyncSession,
    *,
    jtis: JtiRegister,
    form: dict[str, str],
    settings: Settings,
    scope: AuditScope | None,
    clock: Clock,
) -> Client:
    """RFC 7523 §2.2, §3, with the assertion's jti spent in the database. The signature
    is checked whatever the client's standing (against a decoy key when there is no
    active client), so that an unknown client is answered as late as a bad signature."""
    if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
        raise InvalidClient("authenticate with private_key_jwt (client_assertion_type jwt-bearer)")
    assertion = form.get("client_assertion", "")
    header, client_id = _read_assertion(assertion, form=form)
    row = await _registered_client(session, client_id, scope=scope)
    active = _active(row)
    try:
        claims = _verify_assertion(
            assertion,
            header=header,
            client=active,
            client_id=client_id,
            settings=settings,
            clock=clock,
        )
    except ClientSignatureInvalid as bad_signature:
        raise (bad_signature if active is not None else _inactive(row)) from None
    if active is None:  # no assertion verifies with a decoy key: the rule said twice
        raise _inactive(row)
    key = repository.jti_key(kind="assertion", issuer=client_id, jti=claims.jti)
    expires = datetime.fromtimestamp(claims.expires_at + settings.clock_skew, UTC)
    if not await jtis.spend(key, expires_at=expires):
        raise InvalidClient("the client assertion was used before (jti replay)")
    return active


def _read_assertion(assertion: str, *, form: dict[str, str]) -> tuple[dict[str, Any], str]:
    """The assertion's header and the client it names (its ``sub``), unverified; refused
    with the precise reason (the audit entry's) before any client is read."""
    try:
        header, unverified = peek_header_and_claims(assertion)
    except ValueError as error:
        raise ClientAssertionUnreadable(f"the client assertion is not a JWT: {error}") from None
    if header.get("alg") not in tokens.CLIENT_ALGORITHMS:
        raise ClientAssertionAlgorithm(
            f"the client assertion's alg must be one of {', '.join(tokens.CLIENT_ALGORITHMS)}"
        )
    client_id = unverified.get("sub")
    if not isinstance(client_id, str) or form.get("client_id", client_id) != client_id:
        raise InvalidClient("the assertion's sub must be the client id")
    return header, client_id


def _verify_assertion(
    assertion: str,
    *,
    header: dict[str, Any],
    client: Client | None,
    client_id: str,
    settings: Settings,
    clock: Clock,
) -> tokens.AssertionClaims:
    """The assertion's claims if it verifies with ``client``'s keys (with a decoy's, and
    never, when ``client`` is None); its jti is not spent here."""
    client_keys = jwks_rules.key_set(client.jwks) if client is not None else None
    return tokens.verify_client_assertion(
        assertion,
        client_id=client_id,
        client_keys=tokens.assertion_keys(client_keys, header),
        issuer=settings.issuer,
        now=int(clock.time()),
        skew=settings.clock_skew,
    )


async def note_verified_client(
    session: AsyncSession,
    *,
    form: dict[str, str],
    settings: Settings,
    scope: AuditScope,
    clock: Clock,
) -> None:
    """Name the client in ``scope``'s entry if the request's client assertion verifies
    (signature and claims; its jti unspent): for a refusal decided before the client
    authenticated (a DPoP proof, the grant type). A claim that does not verify names
    nobody (decision 0075)."""
    if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
        return
    assertion = form.get("client_assertion", "")
    try:
        header, client_id = _read_assertion(assertion, form=form)
        active = _active(await registry.get_client(session, client_id))
        if active is None:
            return
        _verify_assertion(
            assertion,
            header=header,
            client=active,
            client_id=client_id,
            settings=settings,
            clock=clock,
        )
    except (ClientNotAuthenticated, InvalidClient):
        return
    scope.note(client=active.client_id, department=active.department_id)


async def _self_signed_tls(
    session: AsyncSession, *, form: dict[str, str], certificate: str, scope: AuditScope | None
) -> AuthenticatedClient:
    """RFC 8705 §2.2: the certificate holds a public key registered for the client."""
    client_id = form.get("client_id")
    if not client_id:
        raise InvalidClient("with certificate authentication, send client_id")
    try:
        parsed = certificates.parse_forwarded(certificate)
        thumbprint = certificates.public_key_thumbprint(parsed)
    except certificates.CertificateError as error:
        raise InvalidClient(str(error)) from None
    row = await _registered_client(session, client_id, scope=scope)
    active = _active(row)
    if active is None:
        raise _inactive(row)
    registered = {key.thumbprint() for key in jwks_rules.key_set(active.jwks)}
    if thumbprint not in registered:
        raise ClientCertificateUnregistered("the certificate's key is not registered")
    return AuthenticatedClient(client=active, certificate_x5t=certificates.x5t_s256(parsed))


async def _registered_client(
    session: AsyncSession, client_id: str, *, scope: AuditScope | None
) -> Client | None:
    """The client row, whatever its status; a registered one is named in the audit
    entry (an unknown id is not: it is whatever the caller wrote)."""
    row = await registry.get_client(session, client_id)
    if row is not None and scope is not None:
        scope.note(client=row.client_id, department=row.department_id)
    return row


def _active(row: Client | None) -> Client | None:
    return row if row is not None and row.status == "active" else None


def _inactive(row: Client | None) -> ClientNotAuthenticated:
    """Why a client that is not active cannot authenticate, whatever it sends."""
    if row is None:
        return UnknownClient("no such client")
    return DisabledClient(f"the client is {row.status}")


# --- introspection and revocation ------------------------------------------------------


async def introspect(
    session: AsyncSession,
    *,
    jtis: JtiRegister,
    request: EndpointRequest,
    settings: Settings,
    keys: HubKeys,
    scope: AuditScope | None,
    clock: Clock,
) -> IntrospectionResponse:
    """RFC 7662 §2: ``active`` only for a live, unrevoked token of the caller's own
    department whose client is still active (the token a resource would accept); any
    other token is simply ``{"active": false}`` (§2.2)."""
    client, audit = await _authenticated_caller(
        session, jtis=jtis, request=request, settings=settings, scope=scope, clock=clock
    )
    claims = _own_token(
        request.form, department=client.department_id, settings=settings, keys=keys, clock=clock
    )
    active = claims is not None and await _accepted(session, claims)
    await audit.record_success()
    if claims is None or not active:
        return IntrospectionResponse(active=False)
    return _introspection(claims, settings=settings)


async def _accepted(session: AsyncSession, claims: tokens.AccessClaims) -> bool:
    """Whether a resource would accept the token now: not revoked, and its client
    active in its department (one query, as ``callers.caller_from_token`` reads it)."""
    standing = await repository.client_standing(
        session, client_id=claims.client_id, token_jti=claims.jti
    )
    holder = Caller(client_id=claims.client_id, department=claims.department, scopes=claims.scopes)
    try:
        require_active_client(
            holder,
            department=standing.department if standing else None,
            status=standing.status if standing else None,
            revoked=standing.revoked if standing else False,
        )
    except InvalidToken:
        return False
    return True


def _introspection(claims: tokens.AccessClaims, *, settings: Settings) -> IntrospectionResponse:
    cnf: dict[str, str] = {}
    if claims.jkt:
        cnf["jkt"] = claims.jkt
    if claims.x5t:
        cnf["x5t#S256"] = claims.x5t
    return IntrospectionResponse(
        active=True,
        scope=" ".join(sorted(claims.scopes)),
        client_id=claims.client_id,
        token_type=claims.token_type,
        exp=claims.expires_at,
        iat=claims.issued_at,
        sub=claims.client_id,
        aud=settings.issuer,
        iss=settings.issuer,
        jti=claims.jti,
        department=claims.department,
        cnf=cnf or None,
    )


async def revoke(
    session: AsyncSession,
    *,
    engine: AsyncEngine,
    jtis: JtiRegister,
    request: EndpointRequest,
    settings: Settings,
    keys: HubKeys,
    scope: AuditScope | None,
    clock: Clock,
) -> None:
    """RFC 7009 §2.1: revoke an access token of the caller's own department. An invalid,
    expired or foreign token is answered the same way (§2.2: 200), so the endpoint
    tells nobody whether another department's token exists."""
    client, audit = await _authenticated_caller(
        session, jtis=jtis, request=request, settings=settings, scope=scope, clock=clock
    )
    claims = _own_token(
        request.form, department=client.department_id, settings=settings, keys=keys, clock=clock
    )
    if claims is not None:
        expires = datetime.fromtimestamp(claims.expires_at + settings.clock_skew, UTC)
        # The session has only read (the client); its connection goes back to the pool
        # before the revocation takes one of its own, so that no request ever holds one
        # connection while it waits for another (decision 0056's Later note).
        await session.commit()
        await repository.revoke(engine, jti=claims.jti, expires_at=expires, now=clock.now())
    await audit.record_success(**({"reason": "not-revoked"} if claims is None else {}))


async def _authenticated_caller(
    session: AsyncSession,
    *,
    jtis: JtiRegister,
    request: EndpointRequest,
    settings: Settings,
    scope: AuditScope | None,
    clock: Clock,
) -> tuple[Client, AuditScope]:
    authenticated = await authenticate_client(
        session, jtis=jtis, request=request, settings=settings, scope=scope, clock=clock
    )
    audit = _named(scope)
    if not request.form.get("token"):
        raise InvalidTokenRequest("the token parameter is required")
    return authenticated.client, audit


def _own_token(
    form: dict[str, str], *, department: str, settings: Settings, keys: HubKeys, clock: Clock
) -> tokens.AccessClaims | None:
    """The token's claims if it is a valid access token of ``department``; else None.

    ``token_type_hint`` (RFC 7662 §2.1, RFC 7009 §2.1) is only a hint: we hold
    nothing but access tokens, so it is ignored.
    """
    token = form["token"]
    try:
        kid = peek_header_and_claims(token)[0].get("kid")
        claims = tokens.verify_access_token(
            token,
            keys=keys.verification_keys(kid if isinstance(kid, str) else None),
            issuer=settings.issuer,
            now=int(clock.time()),
            skew=settings.clock_skew,
        )
    except (InvalidToken, ValueError):
        return None
    return claims if claims.department == department else None


# --- a client's own keys (RFC 7591 §2 jwks, managed in the spirit of RFC 7592) ----------


async def describe_own_client(session: AsyncSession, *, caller: Caller) -> OwnClientOut:
    """What the hub holds about the calling client, and nothing about any other."""
    client = await registry.get_client(session, caller.client_id)
    if client is None:  # CurrentCaller checked its standing; gone since
        raise InvalidToken("the token's client is no longer registered", scheme=caller.scheme)
    kids = [str(key["kid"]) for key in client.jwks.get("keys", [])]
    return OwnClientOut(client_id=client.client_id, department=client.department_id, kids=kids)


async def replace_own_jwks(
    session: AsyncSession, *, caller: Caller, jwks: dict[str, Any], scope: AuditScope
) -> list[str]:
    """Replace the calling client's public keys; the kids now registered."""
    normalized = jwks_rules.normalize_jwks(jwks)
    await repository.set_client_jwks(session, client_id=caller.client_id, jwks=normalized)
    kids = [str(key["kid"]) for key in normalized["keys"]]
    await scope.record_change(session, target=caller.client_id)
    return kids


# --- a client's standing, set by an administrator ---------------------------------------


async def list_clients(session: AsyncSession, *, department: str | None) -> ClientList:
    """Every registered client (of ``department``), by id: its standing and key ids."""
    rows = await registry.list_clients(session, department=department)
    return ClientList(clients=[client_out(row) for row in rows])


async def describe_client(session: AsyncSession, *, client_id: str) -> ClientOut:
    row = await registry.get_client(session, client_id)
    if row is None:
        raise ClientNotFound(f"there is no client {client_id!r}")
    return client_out(row)


async def set_client_standing(
    session: AsyncSession,
    *,
    client_id: str,
    active: bool,
    settings: Settings,
    scope: AuditScope,
    clock: Clock,
) -> ClientOut:
    """Disable a client, or enable it again. A disabled client gets no token (its
    attempts are answered as an unknown client's), and the access tokens it holds are
    refused from its next request on, on every replica: every route reads the
    client's standing with the token (``callers.caller_from_token``, and the
    exchange's one read). It is enabled again only once those tokens have expired
    (:func:`_require_tokens_expired`). Keys and department stay as they are."""
    scope.note(target=client_id)
    row = await registry.get_client(session, client_id)
    if row is None:
        raise ClientNotFound(f"there is no client {client_id!r}")
    scope.note(department=row.department_id)
    if active:
        await _require_tokens_expired(session, client_id=client_id, settings=settings, clock=clock)
    elif row.status == "active":
        await repository.record_disablement(session, client_id=client_id, at=clock.now())
    row.status = "active" if active else "disabled"
    await session.flush()
    await scope.record_change(session)
    return client_out(row)


async def _require_tokens_expired(
    session: AsyncSession, *, client_id: str, settings: Settings, clock: Clock
) -> None:
    """Refuse to enable a client while a token it held when disabled may live: access
    tokens are checked against the client's standing, not against when it changed, so
    an early enabling would give them back."""
    disabled_at = await repository.last_disabled(session, client_id)
    if disabled_at is None:
        return
    until = aware(disabled_at) + timedelta(
        seconds=settings.access_token_lifetime + settings.clock_skew
    )
    wait = math.ceil((until - clock.now()).total_seconds())
    if wait > 0:
        raise ClientTokensOutstanding(
            f"access tokens issued before the client was disabled live until"
            f" {rfc3339_ms(until)}; enable it after that",
            headers={"Retry-After": str(wait)},
        )


# --- discovery -------------------------------------------------------------------------


def server_metadata(*, settings: Settings, scopes_supported: list[str]) -> ServerMetadata:
    """RFC 8414 §2 metadata, with RFC 9449 §5.1 and RFC 8705 §3.3 members."""
    issuer = settings.issuer.rstrip("/")
    methods = ["private_key_jwt"]
    if settings.tls_client_cert_header is not None:
        methods.append("self_signed_tls_client_auth")
    return ServerMetadata(
        issuer=settings.issuer,
        token_endpoint=f"{issuer}/oauth/token",
        jwks_uri=f"{issuer}/.well-known/jwks.json",
        grant_types_supported=["client_credentials"],
        token_endpoint_auth_methods_supported=methods,
        token_endpoint_auth_signing_alg_values_supported=SIGNING_ALGORITHMS,
        introspection_endpoint=f"{issuer}/oauth/introspect",
        introspection_endpoint_auth_methods_supported=methods,
        introspection_endpoint_auth_signing_alg_values_supported=SIGNING_ALGORITHMS,
        revocation_endpoint=f"{issuer}/oauth/revoke",
        revocation_endpoint_auth_methods_supported=methods,
        revocation_endpoint_auth_signing_alg_values_supported=SIGNING_ALGORITHMS,
        dpop_signing_alg_values_supported=SIGNING_ALGORITHMS,
        tls_client_certificate_bound_access_tokens=settings.tls_client_cert_header is not None,
        response_types_supported=[],
        scopes_supported=scopes_supported,
        service_documentation=f"{issuer}/docs",
    )
