"""Recognizing the caller of a resource request: access token (RFC 6750, RFC 9068 §4),
its sender constraint (DPoP, RFC 9449 §7; or a certificate, RFC 8705 §3), and, with
I/O, that its client is still active and the token not revoked (RFC 7009).

Everything that needs no I/O happens in :func:`caller_from_request`; the two I/O
checks (the client's standing with the token's revocation, and the proof's single
use) are done either by :func:`caller_from_token`, or by a route that does them
alongside its own query (the exchange: standing in its one read, the proof spent
concurrently through the group-commit register).
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from onceonly.hub.audit.service import AuditScope
from onceonly.hub.auth import certificates, dpop, nonces, repository, tokens
from onceonly.hub.auth.exceptions import (
    InsufficientScope,
    InvalidDpopProof,
    InvalidToken,
    UseDpopNonce,
    UseDpopNonceGrant,
)
from onceonly.hub.auth.jti_register import JtiRegister
from onceonly.hub.config import Settings
from onceonly.hub.keys import HubKeys, KeyLabel
from onceonly.hub.kit.clock import Clock


@dataclass(frozen=True)
class ResourceRequest:
    """The parts of an HTTP request that authentication reads."""

    authorization: str | None
    dpop_proofs: list[str]
    method: str
    url: str  # the issuer's base URL + the request path: what htu must name
    certificate: str | None = None


@dataclass(frozen=True)
class Caller:
    """A client recognized by its access token."""

    client_id: str
    department: str
    scopes: frozenset[str]
    token_jti: str = ""
    scheme: str = "Bearer"
    proof_key: str | None = None  # the DPoP proof's single-use key, still to be spent
    proof_expires: datetime | None = None

    def require_scope(self, scope: str) -> None:
        if scope not in self.scopes:
            raise InsufficientScope(scope, scheme=self.scheme)


def caller_from_request(
    request: ResourceRequest,
    *,
    settings: Settings,
    keys: HubKeys,
    scope: AuditScope | None,
    clock: Clock,
) -> Caller:
    """The caller named by a valid, correctly presented access token; no I/O."""
    default_scheme = _challenge_scheme("Bearer", settings)
    scheme, token = _split_authorization(request.authorization, default_scheme)
    claims = _verify_token(token, scheme=scheme, settings=settings, keys=keys, clock=clock)
    if scope is not None:
        scope.note(client=claims.client_id, department=claims.department)
    caller = Caller(
        client_id=claims.client_id,
        department=claims.department,
        scopes=claims.scopes,
        token_jti=claims.jti,
        scheme=scheme,
    )
    if scheme == "DPoP":
        caller = _with_proof(
            caller, request, claims=claims, token=token, settings=settings, keys=keys, clock=clock
        )
    else:
        _check_bearer_binding(request, claims=claims, settings=settings)
    if scope is not None:
        scope.client_authenticated()
    return caller


def _split_authorization(authorization: str | None, default_scheme: str) -> tuple[str, str]:
    """RFC 6750 §2.1 ``Bearer <token>`` or RFC 9449 §7.1 ``DPoP <token>``."""
    if not authorization:
        raise InvalidToken("an access token is required", token_sent=False, scheme=default_scheme)
    kind, _, token = authorization.partition(" ")
    scheme = {"bearer": "Bearer", "dpop": "DPoP"}.get(kind.lower())
    if scheme is None or not token.strip():
        raise InvalidToken(f"use the Authorization: {default_scheme} scheme", scheme=default_scheme)
    return scheme, token.strip()


# One per process: an entry counts only while the ring that asks holds its key.
_VERIFIED_TOKENS = tokens.VerifiedTokens(max_entries=4096)


def _verify_token(
    token: str, *, scheme: str, settings: Settings, keys: HubKeys, clock: Clock
) -> tokens.AccessClaims:
    try:
        return _VERIFIED_TOKENS.verify(
            token,
            key_ring=keys.verification_keys,
            issuer=settings.issuer,
            now=int(clock.time()),
            skew=settings.clock_skew,
        )
    except InvalidToken as error:  # where only DPoP is taken, the challenge names it
        raise InvalidToken(error.detail, scheme=_challenge_scheme(scheme, settings)) from None


def _challenge_scheme(sent: str, settings: Settings) -> str:
    """The scheme a refused token is challenged with: DPoP where the hub takes only
    DPoP-bound tokens, else the one it was sent with (a hub that binds tokens to TLS
    client certificates takes them as Bearer too, RFC 8705)."""
    if settings.require_dpop and settings.tls_client_cert_header is None:
        return "DPoP"
    return sent


def _with_proof(
    caller: Caller,
    request: ResourceRequest,
    *,
    claims: tokens.AccessClaims,
    token: str,
    settings: Settings,
    keys: HubKeys,
    clock: Clock,
) -> Caller:
    """RFC 9449 §7.1: a DPoP-bound token, with one valid proof by the bound key."""
    if claims.jkt is None:
        raise InvalidToken("the access token is not DPoP-bound; send it as Bearer", scheme="DPoP")
    proof = check_proof(
        request.dpop_proofs,
        method=request.method,
        url=request.url,
        access_token=dpop.PresentedToken(text=token, client_id=claims.client_id, jkt=claims.jkt),
        settings=settings,
        keys=keys,
        error=InvalidDpopProof,
        clock=clock,
    )
    if proof.jkt != claims.jkt:
        raise InvalidDpopProof("the DPoP proof is signed by another key than the token's cnf.jkt")
    return replace(
        caller, proof_key=proof_jti_key(proof), proof_expires=proof_expiry(proof, settings)
    )


def check_proof(
    proofs: list[str],
    *,
    method: str,
    url: str,
    access_token: dpop.PresentedToken | None,
    settings: Settings,
    keys: HubKeys,
    error: Callable[[str], Exception],
    clock: Clock,
) -> dpop.Proof:
    """One valid proof (RFC 9449 §4.3), with the server's nonce when nonces are on.
    ``access_token``: the token a resource request presents, verified (None at the
    token endpoint)."""
    if len(proofs) != 1:
        raise error("exactly one DPoP header is required")
    now = int(clock.time())
    try:
        proof = dpop.verify_proof(
            proofs[0],
            method=method,
            url=url,
            now=now,
            max_age=settings.dpop_proof_lifetime,
            skew=settings.clock_skew,
            access_token=access_token,
        )
    except dpop.ProofError as problem:
        raise error(str(problem)) from None
    check_nonce(proof, settings=settings, keys=keys, now=now, resource=access_token is not None)
    return proof


def check_nonce(
    proof: dpop.Proof, *, settings: Settings, keys: HubKeys, now: int, resource: bool
) -> None:
    """RFC 9449 §8 (token endpoint) and §9 (resource): a fresh server nonce, if required."""
    if not settings.dpop_nonce:
        return
    secret, lifetime = keys.derived(KeyLabel.DPOP_NONCE), settings.dpop_nonce_lifetime
    if nonces.is_fresh(proof.nonce, secret, now=now, lifetime=lifetime):
        return
    nonce = nonces.current_nonce(secret, now=now, lifetime=lifetime)
    detail = "the DPoP proof must carry the nonce in the DPoP-Nonce header"
    if resource:
        raise UseDpopNonce(detail, nonce=nonce)
    raise UseDpopNonceGrant(detail, nonce=nonce)


def proof_jti_key(proof: dpop.Proof) -> str:
    return repository.jti_key(kind="dpop", issuer=proof.jkt, jti=proof.jti)


def proof_expiry(proof: dpop.Proof, settings: Settings) -> datetime:
    """How long a proof's jti must be remembered: as long as its iat is acceptable."""
    seconds = proof.iat + settings.dpop_proof_lifetime + 2 * settings.clock_skew
    return datetime.fromtimestamp(seconds, UTC)


def _check_bearer_binding(
    request: ResourceRequest, *, claims: tokens.AccessClaims, settings: Settings
) -> None:
    """A Bearer token must be unbound, or bound to the certificate presented with it."""
    if claims.jkt is not None:  # RFC 9449 §7.2: never accept a DPoP token as Bearer
        raise InvalidToken("a DPoP-bound token needs the DPoP scheme and a proof", scheme="DPoP")
    if claims.x5t is not None:
        _check_certificate(request, claims.x5t, settings)
        return
    if settings.require_dpop:
        raise InvalidToken("this hub accepts only DPoP-bound access tokens", scheme="DPoP")


def _check_certificate(request: ResourceRequest, x5t: str, settings: Settings) -> None:
    """RFC 8705 §3: the certificate of this connection is the one the token names."""
    if settings.tls_client_cert_header is None or not request.certificate:
        raise InvalidToken("the certificate-bound token came without its certificate")
    try:
        presented = certificates.x5t_s256(certificates.parse_forwarded(request.certificate))
    except certificates.CertificateError as error:
        raise InvalidToken(str(error)) from None
    if presented != x5t:
        raise InvalidToken("the certificate-bound token came with another certificate")


def require_active_client(
    caller: Caller, *, department: str | None, status: str | None, revoked: bool = False
) -> None:
    """Refuse a revoked token, or one whose client was disabled or moved since issue."""
    if revoked:
        raise InvalidToken("the access token has been revoked", scheme=caller.scheme)
    if status != "active" or department != caller.department:
        raise InvalidToken("the token's client is no longer active", scheme=caller.scheme)


async def caller_from_token(
    session: AsyncSession,
    *,
    jtis: JtiRegister,
    request: ResourceRequest,
    settings: Settings,
    keys: HubKeys,
    scope: AuditScope | None,
    clock: Clock,
) -> Caller:
    """The caller of a resource request, with its standing checked and its proof spent."""
    caller = caller_from_request(request, settings=settings, keys=keys, scope=scope, clock=clock)
    standing = await repository.client_standing(
        session, client_id=caller.client_id, token_jti=caller.token_jti
    )
    await session.commit()  # only read: its connection goes back before the spend waits
    require_active_client(
        caller,
        department=standing.department if standing else None,
        status=standing.status if standing else None,
        revoked=standing.revoked if standing else False,
    )
    if not await spend_proof(jtis, caller):
        raise InvalidDpopProof("the DPoP proof was used before (jti replay)")
    return caller


async def spend_proof(jtis: JtiRegister, caller: Caller, *, durable: bool = True) -> bool:
    """RFC 9449 §11.1: a proof's jti is accepted once, on every replica; False on replay.
    ``durable``: as ``JtiRegister.spend``."""
    if caller.proof_key is None or caller.proof_expires is None:
        return True
    return await jtis.spend(caller.proof_key, expires_at=caller.proof_expires, durable=durable)
