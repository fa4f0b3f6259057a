"""Pure JWT logic: client assertions in, access tokens out. No I/O here.

- Client assertions: RFC 7523 §3 (JWT bearer client authentication), used as
  ``private_key_jwt`` (OpenID Connect Core §9).
- Access tokens: RFC 9068 (JWT profile for OAuth 2.0 access tokens).
"""

import json
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from hub.auth.exceptions import InvalidClient, InvalidToken

CLIENT_ALGORITHMS = ("ES256", "EdDSA", "PS256")
ACCESS_TOKEN_TYPE = "at+jwt"
MAX_JWT_BYTES = 8192
MAX_ASSERTION_LIFETIME = 120
_DECODE_ERRORS = (JoseError, ValueError, KeyError, TypeError)


@dataclass(frozen=True)
class AccessClaims:
    client_id: str
    department: str
    scopes: frozenset[str]
    jti: str
    expires_at: int


@dataclass(frozen=True)
class AssertionClaims:
    client_id: str
    jti: str
    expires_at: int


def peek_header_and_claims(compact: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS *without* verifying it (to find the key).

    Anything that is not a compact JWS (RFC 7515 §7.1) raises ValueError, whatever
    part of it fails to decode.
    """
    if len(compact) > MAX_JWT_BYTES:
        raise ValueError(f"the JWT is longer than {MAX_JWT_BYTES} bytes")
    parts = compact.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS")
    try:
        obj = jws.extract_compact(compact.encode())
    except JoseError as error:
        raise ValueError(f"not a compact JWS ({_reason(error)})") from None
    claims = json.loads(obj.payload)
    if not isinstance(claims, dict):
        raise ValueError("the JWT claims are not a JSON object")
    return dict(obj.headers()), claims


def _expect(claims: dict[str, Any], name: str, kind: type) -> Any:
    value = claims.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"claim {name} is missing or not a {kind.__name__}")
    return value


def _audience_is(claims: dict[str, Any], expected: str) -> bool:
    aud = claims.get("aud")
    return aud == expected or aud == [expected]


def verify_client_assertion(
    assertion: str,
    *,
    client_id: str,
    client_keys: KeySet,
    issuer: str,
    now: int,
    skew: int,
) -> AssertionClaims:
    """Check a ``private_key_jwt`` assertion (RFC 7523 §3); raise InvalidClient if bad.

    §3 items 1-2: ``iss`` and ``sub`` are the client id; item 3: ``aud`` is the
    issuer, and only the issuer; item 4: ``exp`` present, in the future, and (our
    rule) at most 120 s ahead; item 7: ``jti`` present (single use is the caller's
    job, since it needs storage); item 9: the signature, with an asymmetric
    algorithm that the client's registered key supports.
    """
    try:
        token = jwt.decode(assertion, client_keys, algorithms=list(CLIENT_ALGORITHMS))
        claims = token.claims
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise ValueError("iss and sub must both be the client id")
        if not _audience_is(claims, issuer):
            raise ValueError("aud must be the hub's issuer identifier")
        exp = _expect(claims, "exp", int)
        jti = _expect(claims, "jti", str)
    except _DECODE_ERRORS as error:
        raise InvalidClient(f"the client assertion is not valid: {_reason(error)}") from None
    if exp <= now - skew:
        raise InvalidClient("the client assertion has expired")
    if exp > now + MAX_ASSERTION_LIFETIME + skew:
        raise InvalidClient(f"the client assertion lives longer than {MAX_ASSERTION_LIFETIME} s")
    iat = claims.get("iat")
    if isinstance(iat, int) and iat > now + skew:
        raise InvalidClient("the client assertion was issued in the future")
    if not 1 <= len(jti) <= 256:
        raise InvalidClient("the client assertion's jti must be 1 to 256 characters")
    return AssertionClaims(client_id=client_id, jti=jti, expires_at=exp)


def issue_access_token(
    *,
    key: ECKey,
    issuer: str,
    client_id: str,
    department: str,
    scopes: frozenset[str],
    now: int,
    lifetime: int,
) -> str:
    """An RFC 9068 access token: typ ``at+jwt`` (§2.1), the §2.2 claims, our ``department``."""
    header = {"typ": ACCESS_TOKEN_TYPE, "alg": "ES256", "kid": key.kid}
    claims = {
        "iss": issuer,
        "aud": issuer,
        "sub": client_id,
        "client_id": client_id,
        "department": department,
        "scope": " ".join(sorted(scopes)),
        "jti": uuid4().hex,
        "iat": now,
        "exp": now + lifetime,
    }
    return jwt.encode(header, claims, key, algorithms=["ES256"])


def verify_access_token(
    token: str, *, keys: KeySet, issuer: str, now: int, skew: int
) -> AccessClaims:
    """Validate an access token per RFC 9068 §4; raise InvalidToken if anything is off."""
    try:
        header, _ = peek_header_and_claims(token)
        if str(header.get("typ", "")).lower() not in (ACCESS_TOKEN_TYPE, "application/at+jwt"):
            raise ValueError("typ must be at+jwt")
        decoded = jwt.decode(token, keys, algorithms=["ES256"])
        claims = decoded.claims
        if claims.get("iss") != issuer or not _audience_is(claims, issuer):
            raise ValueError("wrong issuer or audience")
        exp = _expect(claims, "exp", int)
        scope = claims.get("scope", "")
        result = AccessClaims(
            client_id=_expect(claims, "client_id", str),
            department=_expect(claims, "department", str),
            scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
            jti=_expect(claims, "jti", str),
            expires_at=exp,
        )
    except _DECODE_ERRORS as error:
        raise InvalidToken(f"the access token is not valid: {_reason(error)}") from None
    if exp <= now - skew:
        raise InvalidToken("the access token has expired")
    iat = claims.get("iat")
    if isinstance(iat, int) and iat > now + skew:
        raise InvalidToken("the access token was issued in the future")
    return result


def _reason(error: Exception) -> str:
    """A short, safe reason: never the token itself."""
    if isinstance(error, JoseError):
        return error.error or type(error).__name__
    return str(error)[:200]
