"""Pure JWT logic: client assertions in, access tokens out. No I/O here.

- Client assertions: RFC 7523 §3 (JWT bearer client authentication), used as
  ``private_key_jwt`` (OpenID Connect Core §9).
- Access tokens: RFC 9068 (JWT profile for OAuth 2.0 access tokens).
"""

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import ECKey, Key, KeySet, OKPKey, RSAKey

from onceonly.hub.auth.exceptions import ClientSignatureInvalid, InvalidClient, InvalidToken
from onceonly.hub.kit.fair_lru import FairLru
from onceonly.hub.kit.jws import peek_header_and_claims, safe_reason
from onceonly.hub.registry.jwks import ALGORITHMS, check_rsa_key

# RFC 9864: "Ed25519" is the fully specified name; "EdDSA" stays accepted (deprecated).
CLIENT_ALGORITHMS = ("ES256", "Ed25519", "EdDSA", "PS256")
# The key type each algorithm verifies with (RFC 7518 §3.4, §3.5; RFC 8037 §3.1).
_KEY_TYPES = {alg: kty for kty, algs in ALGORITHMS.items() for alg in algs}
ACCESS_TOKEN_TYPE = "at+jwt"
MAX_ASSERTION_LIFETIME = 120
_DECODE_ERRORS = (JoseError, ValueError, KeyError, TypeError)


@dataclass(frozen=True)
class AccessClaims:
    client_id: str
    department: str
    scopes: frozenset[str]
    jti: str
    expires_at: int
    issued_at: int
    jkt: str | None = None  # RFC 9449 §6.1: bound to a DPoP key
    x5t: str | None = None  # RFC 8705 §3.1: bound to a client certificate

    @property
    def token_type(self) -> str:
        return "DPoP" if self.jkt else "Bearer"


@dataclass(frozen=True)
class AssertionClaims:
    client_id: str
    jti: str
    expires_at: int


# What _expect's kinds are, in words: its integers are times (exp, iat)
_KIND_NAMES: dict[type, str] = {int: "an integer number of seconds", str: "a string"}


def _expect(claims: dict[str, Any], name: str, kind: type) -> Any:
    value = claims.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"claim {name} is missing or not {_KIND_NAMES[kind]}")
    return value


def _audience_is(claims: dict[str, Any], expected: str) -> bool:
    aud = claims.get("aud")
    return aud == expected or aud == [expected]


def assertion_keys(client_keys: KeySet | None, header: dict[str, Any]) -> KeySet:
    """The keys to check a client assertion with: the client's, when one of them is for
    the header's ``kid`` and ``alg``; otherwise a decoy of the kind ``alg`` names, under
    that ``kid``, which no assertion verifies with.

    So every assertion costs one signature check: an unknown or disabled client
    (``client_keys`` None) or an unknown kid takes as long as a bad signature, and
    the time of the answer does not tell which client ids exist.
    """
    alg, kid = header.get("alg"), header.get("kid")
    kid = kid if isinstance(kid, str) else None
    kty = _KEY_TYPES.get(alg, "EC") if isinstance(alg, str) else "EC"
    if client_keys is not None:
        try:
            key = client_keys.get_by_kid(kid, {"alg": alg} if isinstance(alg, str) else None)
        except (JoseError, ValueError):
            key = None
        if key is not None and key.key_type == kty and _usable(key):
            return client_keys
    decoy = _decoy(kty).as_dict(private=False)
    decoy["kid"] = kid if kid is not None else decoy.get("kid", "decoy")
    return KeySet.import_key_set({"keys": [decoy]})


def _usable(key: Key) -> bool:
    """Whether the hub verifies with ``key``: an RSA key only with the exponent and the
    size registration allows now (decision 0009's Later note), so that one registered
    before that rule (whose checks may cost 7 ms each, with a large exponent) is never
    used; the assertion is then checked with the decoy, and refused like any other."""
    if key.key_type != "RSA":
        return True
    try:
        check_rsa_key(key.as_dict(private=False))
    except ValueError:
        return False
    return True


@functools.cache
def _decoy(kty: str) -> ECKey | OKPKey | RSAKey:
    """One key pair of each type per process; its private half is never used."""
    if kty == "OKP":
        return OKPKey.generate_key("Ed25519", auto_kid=True)
    if kty == "RSA":
        return RSAKey.generate_key(2048, auto_kid=True)
    return ECKey.generate_key("P-256", auto_kid=True)


def verify_client_assertion(
    assertion: str,
    *,
    client_id: str,
    client_keys: KeySet,
    issuer: str,
    now: int,
    skew: int,
) -> AssertionClaims:
    """Check a ``private_key_jwt`` assertion (RFC 7523 §3).

    Item 9 first: the signature, with an asymmetric algorithm that the client's
    registered key supports; if it does not verify, :class:`ClientSignatureInvalid`
    (answered like an unknown client). Then, for the holder of the client's key,
    InvalidClient with the reason: items 1-2, ``iss`` and ``sub`` are the client id;
    item 3, ``aud`` is the issuer, and only the issuer; item 4, ``exp`` present, in
    the future, and (our rule) at most 120 s ahead; item 5, ``nbf``, if present, not
    in the future; item 6, ``iat``, if present, not in the future; item 7, ``jti``
    present (our rule; single use is the caller's job, since it needs storage).
    "The future" allows ``skew`` seconds of clock difference.
    """
    try:
        claims = jwt.decode(assertion, client_keys, algorithms=list(CLIENT_ALGORITHMS)).claims
    except BadSignatureError:
        detail = "the client assertion's signature does not verify with the client's keys"
        raise ClientSignatureInvalid(detail) from None
    except _DECODE_ERRORS as error:
        detail = f"the client assertion does not verify: {safe_reason(error)}"
        raise ClientSignatureInvalid(detail) from None
    try:
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise ValueError("iss and sub must both be the client id")
        if not _audience_is(claims, issuer):
            raise ValueError("aud must be the hub's issuer identifier")
        exp = _expect(claims, "exp", int)
        jti = _expect(claims, "jti", str)
        not_before, issued = _numeric_date(claims, "nbf"), _numeric_date(claims, "iat")
    except ValueError as error:
        raise InvalidClient(f"the client assertion is not valid: {safe_reason(error)}") from None
    if exp <= now - skew:
        raise InvalidClient("the client assertion has expired")
    if exp > now + MAX_ASSERTION_LIFETIME + skew:
        raise InvalidClient(f"the client assertion lives longer than {MAX_ASSERTION_LIFETIME} s")
    if not_before is not None and not_before > now + skew:
        raise InvalidClient("the client assertion is not valid yet (nbf is in the future)")
    if issued is not None and issued > now + skew:
        raise InvalidClient("the client assertion was issued in the future")
    if not 1 <= len(jti) <= 256:
        raise InvalidClient("the client assertion's jti must be 1 to 256 characters")
    return AssertionClaims(client_id=client_id, jti=jti, expires_at=exp)


def _numeric_date(claims: dict[str, Any], name: str) -> float | None:
    """An optional NumericDate claim (RFC 7519 §2): absent, or a finite JSON number."""
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"claim {name} is not a NumericDate")
    return float(value)


def issue_access_token(
    *,
    key: ECKey,
    issuer: str,
    client_id: str,
    department: str,
    scopes: frozenset[str],
    now: int,
    lifetime: int,
    confirmation: dict[str, str] | None = None,
) -> str:
    """An RFC 9068 access token: typ ``at+jwt`` (§2.1), the §2.2 claims, our ``department``,
    and ``cnf`` (RFC 7800 §3.1) when it is sender-constrained (``jkt``: RFC 9449 §6.1;
    ``x5t#S256``: RFC 8705 §3.1)."""
    header = {"typ": ACCESS_TOKEN_TYPE, "alg": "ES256", "kid": key.kid}
    claims: dict[str, Any] = {
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
    if confirmation:
        claims["cnf"] = confirmation
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
        cnf = claims.get("cnf") or {}
        if not isinstance(cnf, dict):
            raise ValueError("cnf must be an object")
        result = AccessClaims(
            client_id=_expect(claims, "client_id", str),
            department=_expect(claims, "department", str),
            scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
            jti=_expect(claims, "jti", str),
            expires_at=exp,
            issued_at=_expect(claims, "iat", int),
            jkt=_optional_string(cnf, "jkt"),
            x5t=_optional_string(cnf, "x5t#S256"),
        )
    except BadSignatureError:
        raise InvalidToken("the access token is not valid: its signature does not verify") from None
    except _DECODE_ERRORS as error:
        raise InvalidToken(f"the access token is not valid: {safe_reason(error)}") from None
    _check_lifetime(result, now=now, skew=skew)
    return result


def _check_lifetime(claims: AccessClaims, *, now: int, skew: int) -> None:
    if claims.expires_at <= now - skew:
        raise InvalidToken("the access token has expired")
    if claims.issued_at > now + skew:
        raise InvalidToken("the access token was issued in the future")


@dataclass(frozen=True)
class _Verified:
    claims: AccessClaims
    issuer: str
    kid: str
    key: Key  # the key its signature verified with
    thumbprint: str


# The key ring, asked for the keys that verify a token of key id ``kid``
# (onceonly.hub.keys.HubKeys.verification_keys: it re-reads the ring for an unknown kid).
KeyRing = Callable[[str | None], KeySet]


class VerifiedTokens:
    """:func:`verify_access_token`, remembering the tokens whose signature verified.

    A client presents the same access token on every request for minutes, and its
    signature check (ES256) is most of the token's cost. An entry is found by the
    token's exact text, so a token that differs in one character is verified anew.
    On every hit the key ring is asked again for the token's key id, and the entry
    counts only if the ring still holds the very key that verified it: a key retired
    or replaced in the ring stops its tokens at once, as without this cache. The
    issuer and the token's lifetime (``exp``, ``iat``) are checked on every hit too.
    An entry that no longer counts (expired, its key gone) is dropped. Revocation and
    the client's standing are not claims of the token: they stay in the per-request
    read. DPoP proofs are single-use and never pass through here.

    Bounded twice (decision 0046, as the facts cache by 0045): at most ``max_entries``
    in all, the least recently used going first, and at most ``max_per_client`` of the
    tokens of one client (the ``client_id`` they were issued to), whose own least
    recently used goes when one more of its tokens verifies. A client gets a new token
    whenever it asks, so without the second bound one client could push out everyone
    else's tokens, and each of their requests would check a signature again.
    """

    def __init__(self, *, max_entries: int = 4096, max_per_client: int = 64) -> None:
        self._entries: FairLru[str, _Verified] = FairLru(
            max_entries=max_entries, max_per_owner=max_per_client
        )

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, token: object) -> bool:
        return token in self._entries

    def verify(
        self, token: str, *, key_ring: KeyRing, issuer: str, now: int, skew: int
    ) -> AccessClaims:
        """As :func:`verify_access_token`, with the keys from ``key_ring``."""
        entry = self._entries.get(token)
        if entry is not None:
            if entry.issuer == issuer and _holds(key_ring(entry.kid), entry):
                try:
                    _check_lifetime(entry.claims, now=now, skew=skew)
                except InvalidToken:
                    self._entries.discard(token)
                    raise
                return entry.claims
            self._entries.discard(token)  # it no longer counts: verified anew, or refused
        kid = _kid(token)
        keys = key_ring(kid)
        claims = verify_access_token(token, keys=keys, issuer=issuer, now=now, skew=skew)
        key = _key_by_id(keys, kid)
        if kid is not None and key is not None:
            entry = _Verified(claims, issuer, kid, key, key.thumbprint())
            self._entries.put(token, entry, owner=claims.client_id)
        return claims


def _kid(token: str) -> str | None:
    try:
        kid = peek_header_and_claims(token)[0].get("kid")
    except ValueError:
        return None
    return kid if isinstance(kid, str) else None


def _key_by_id(keys: KeySet, kid: str | None) -> Key | None:
    try:
        return keys.get_by_kid(kid)
    except (JoseError, ValueError):
        return None


def _holds(keys: KeySet, entry: _Verified) -> bool:
    """Whether the ring still holds the key that verified ``entry``'s token."""
    key = _key_by_id(keys, entry.kid)
    return key is not None and (key is entry.key or key.thumbprint() == entry.thumbprint)


def _optional_string(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"cnf.{name} must be a string")
    return value
