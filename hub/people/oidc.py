"""People's sign-in with an external OpenID Connect provider: the authorization code
flow (OpenID Connect Core 1.0 §3.1) with PKCE (RFC 7636, S256), ``state`` and ``nonce``.

Where each piece of state lives, so that any replica can serve any step:

1. :func:`start`: a fresh ``state``, ``nonce`` and PKCE verifier are sealed (AES-256-GCM,
   10 minutes) into the login cookie (``console.cookies.put_login``: ``__Host-`` and
   ``Path=/`` in production, so no sibling host can set it); the browser goes to the
   provider. No table: the cookie is the login's memory, and binds it to the browser
   that started it (a callback URL sent to someone else finds no cookie).
2. :func:`finish`: the cookie opens, its ``state`` equals the query's and is spent in
   the single-use register (``used_jtis``, shared by every replica); the code is
   exchanged with Authlib's client; the ID token is checked against the provider's
   JWKS (§3.1.3.7); the (issuer, ``sub``) pair must belong to a registered, active
   person (no accounts are made here); a hub session starts (``method = "oidc"``).
3. For the CLI (a loopback redirect, RFC 8252 §7.3) no session starts at the callback:
   the person confirms it first, on a hub page (:class:`CliConfirmation`, decision
   0095), since any web page can send a browser through a sign-in at a provider where
   the person is signed in already, with the port of whoever listens on this computer.
   :func:`confirm` then starts the session and seals it into a one-time code that
   lives 60 seconds and whose ``jti`` is spent when :func:`redeem` trades it: the
   session token itself never appears in a URL.

Errors (RFC 9457, audited on the callback and the code exchange)::

    HubError
    ├── OidcNotConfigured         404  no provider configured
    ├── OidcStateInvalid          400  cookie missing, tampered, expired, or state reused
    ├── OidcProviderRefused       401  the provider said no (error=…, invalid_grant)
    ├── OidcProviderUnavailable   502  discovery, JWKS or token endpoint failed
    ├── OidcIdTokenInvalid        401  signature, alg, iss, aud, exp, iat or nonce wrong
    ├── OidcAccountNotLinked      403  no account for this (issuer, sub)
    ├── OidcAccountDisabled       403  the account is disabled
    ├── OidcConfirmationRefused   403  a CLI sign-in's confirmation without its token
    └── OidcCodeInvalid           400  one-time code tampered, expired or already used
    SignInsBusy                   429  too many sign-ins wait for the provider (decision 0068)
"""

import asyncio
import hashlib
import hmac
import json
import secrets
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

import httpx
from authlib.deprecate import AuthlibDeprecationWarning  # type: ignore[import-untyped]
from cryptography.exceptions import InvalidTag
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import Key, KeySet
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onceonly.hub.audit.service import AuditScope
from onceonly.hub.config import Settings
from onceonly.hub.db import WRITE_OPTION
from onceonly.hub.keys import HubKeys, KeyLabel
from onceonly.hub.kit import sealing
from onceonly.hub.kit.clock import Clock
from onceonly.hub.kit.jws import peek_header_and_claims
from onceonly.hub.kit.problems import HubError
from onceonly.hub.kit.single_use import SingleUseRegister
from onceonly.hub.kit.strict import STRICT_INPUT
from onceonly.hub.kit.untrusted_json import load_json
from onceonly.hub.people import repository, service
from onceonly.hub.people.exceptions import SignInsBusy
from onceonly.hub.people.models import Person
from onceonly.hub.people.schemas import SessionOut

with warnings.catch_warnings():
    # Authlib 1.9 prefers the httpx2 fork and warns, once, when it runs on httpx.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.base_client import OAuthError  # type: ignore[import-untyped]
    from authlib.integrations.httpx_client import (  # type: ignore[import-untyped]
        AsyncOAuth2Client,
    )

CALLBACK_PATH = "/v1/people/oidc/callback"
LOGIN_LIFETIME = 600
CODE_LIFETIME = 60
CONFIRM_LIFETIME = 300  # how long a command-line sign-in waits for the person's yes
METADATA_TTL = 300.0
ID_TOKEN_ALGORITHMS = ("RS256", "ES256")
# The discovery document and the JWKS are asked for at most once in this many seconds,
# whatever asks (an unknown kid, a failed fetch, many sign-ins at once): decision 0068.
MIN_REFETCH = 10.0
# All a sign-in asks of the provider (discovery, token endpoint, keys) within this many
# seconds in all: httpx's timeout bounds each step, not a provider that drips its answer.
PROVIDER_DEADLINE = 10.0
_MAX_SEALED = 4096


T = TypeVar("T")


# --- errors ------------------------------------------------------------------------


class OidcNotConfigured(HubError):
    status = 404
    slug = "oidc-not-configured"
    title = "OpenID Connect sign-in is not configured"


class OidcStateInvalid(HubError):
    status = 400
    slug = "oidc-state-invalid"
    title = "Sign-in state not valid"


class OidcProviderRefused(HubError):
    status = 401
    slug = "oidc-provider-refused"
    title = "The OpenID Connect provider refused the sign-in"


class OidcProviderUnavailable(HubError):
    status = 502
    slug = "oidc-provider-unavailable"
    title = "The OpenID Connect provider did not answer properly"


class OidcIdTokenInvalid(HubError):
    status = 401
    slug = "oidc-id-token-invalid"
    title = "ID token not valid"


class OidcAccountNotLinked(HubError):
    status = 403
    slug = "oidc-account-not-linked"
    title = "No account for this identity"


class OidcAccountDisabled(HubError):
    status = 403
    slug = "oidc-account-disabled"
    title = "Account disabled"


class OidcConfirmationRefused(HubError):
    status = 403
    slug = "oidc-confirmation-refused"
    title = "Command-line sign-in not confirmed"


class OidcCodeInvalid(HubError):
    status = 400
    slug = "oidc-code-invalid"
    title = "Sign-in code not valid"


class OidcCodeIn(BaseModel):
    model_config = STRICT_INPUT

    code: str = Field(min_length=1, max_length=_MAX_SEALED)


# --- sealed values (the login cookie, the one-time code) ------------------------------


# The associated data of a CLI sign-in waiting for its confirmation, sealed under the
# login's key: a login cookie never opens as a confirmation, nor the reverse.
_CONFIRMATION = b"/cli-confirmation"


def _seal(keys: HubKeys, label: KeyLabel, payload: dict[str, Any], *, kind: bytes = b"") -> str:
    """Sealed (onceonly.hub.kit.sealing) under the key derived for ``label``, which (with
    ``kind``) is also the associated data. A rotation of the derivation root ends what
    it sealed."""
    plain = json.dumps(payload, separators=(",", ":")).encode()
    return sealing.seal(keys.derived(label), plain, aad=label.value + kind)


def _unseal(
    keys: HubKeys, label: KeyLabel, sealed: str, *, kind: bytes = b""
) -> dict[str, Any] | None:
    """The payload, or None for anything that was not sealed by this hub for ``label``
    and ``kind``."""
    if len(sealed) > _MAX_SEALED:
        return None
    try:
        plain = sealing.unseal(keys.derived(label), sealed, aad=label.value + kind)
        payload = json.loads(plain)
    except (ValueError, InvalidTag):
        return None
    return payload if isinstance(payload, dict) else None


def _spend_key(kind: str, value: str) -> str:
    """The single-use register's key (64 hex characters), never the value itself."""
    return hashlib.sha256(f"oidc-{kind}\0{value}".encode()).hexdigest()


def _at(unix_time: int) -> datetime:
    return datetime.fromtimestamp(unix_time, UTC)


@dataclass(frozen=True)
class LoginState:
    """What the callback must know of the login that :func:`start` began."""

    state: str
    nonce: str
    verifier: str
    cli_port: int | None
    expires: int
    cli_state: str | None = None  # echoed to the CLI's listener (RFC 8252 §8.9)

    @classmethod
    def new(cls, *, cli_port: int | None, cli_state: str | None, now: int) -> "LoginState":
        return cls(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            verifier=secrets.token_urlsafe(48),  # 64 characters (RFC 7636 §4.1: 43 to 128)
            cli_port=cli_port,
            expires=now + LOGIN_LIFETIME,
            cli_state=cli_state,
        )

    def seal(self, keys: HubKeys) -> str:
        payload = {
            "state": self.state,
            "nonce": self.nonce,
            "verifier": self.verifier,
            "cli_port": self.cli_port,
            "cli_state": self.cli_state,
            "exp": self.expires,
        }
        return _seal(keys, KeyLabel.OIDC_LOGIN, payload)

    @classmethod
    def open(
        cls, sealed: str | None, *, state: str | None, keys: HubKeys, now: int
    ) -> "LoginState":
        """The login of this browser whose ``state`` the provider sent back."""
        payload = _unseal(keys, KeyLabel.OIDC_LOGIN, sealed) if sealed else None
        if payload is None:
            raise OidcStateInvalid(
                "this browser has no sign-in in progress with the hub (the sign-in cookie is"
                " missing or not valid); start again, from the hub's public address"
            )
        login = cls(
            state=str(payload["state"]),
            nonce=str(payload["nonce"]),
            verifier=str(payload["verifier"]),
            cli_port=payload["cli_port"],
            expires=int(payload["exp"]),
            cli_state=payload["cli_state"],
        )
        if state is None or not hmac.compare_digest(state.encode(), login.state.encode()):
            raise OidcStateInvalid("the state does not match this browser's sign-in")
        if login.expires <= now:
            raise OidcStateInvalid(f"the sign-in took longer than {LOGIN_LIFETIME} s; start again")
        return login


@dataclass(frozen=True, kw_only=True)
class CliConfirmation:
    """A command-line sign-in that the callback checked, waiting for the person to say
    yes on the hub's page (decision 0095). Sealed into the login cookie in place of the
    login; ``token`` is the page's form token: only the page the hub showed this browser
    holds it, and another site can neither read that page nor frame it."""

    person: str
    cli_port: int
    cli_state: str | None
    token: str
    expires: int

    @classmethod
    def new(cls, *, person: str, login: LoginState, now: int) -> "CliConfirmation":
        assert login.cli_port is not None
        return cls(
            person=person,
            cli_port=login.cli_port,
            cli_state=login.cli_state,
            token=secrets.token_urlsafe(32),
            expires=now + CONFIRM_LIFETIME,
        )

    def seal(self, keys: HubKeys) -> str:
        payload = {
            "person": self.person,
            "cli_port": self.cli_port,
            "cli_state": self.cli_state,
            "token": self.token,
            "exp": self.expires,
        }
        return _seal(keys, KeyLabel.OIDC_LOGIN, payload, kind=_CONFIRMATION)

    @classmethod
    def open(
        cls,
        sealed: str | None,
        *,
        keys: HubKeys,
        now: int,
        scope: AuditScope | None = None,
    ) -> "CliConfirmation":
        """The sign-in this browser's cookie holds, if it waits still; ``scope``'s entry
        names its person, whether it waits still or not (an expired one is refused
        naming who it was for)."""
        payload = _unseal(keys, KeyLabel.OIDC_LOGIN, sealed, kind=_CONFIRMATION) if sealed else None
        if payload is None:
            raise OidcConfirmationRefused(
                "no command-line sign-in waits for a confirmation in this browser"
            )
        pending = cls(
            person=str(payload["person"]),
            cli_port=int(payload["cli_port"]),
            cli_state=payload["cli_state"],
            token=str(payload["token"]),
            expires=int(payload["exp"]),
        )
        if scope is not None:
            scope.note(person=pending.person)
        if pending.expires <= now:
            raise OidcConfirmationRefused(
                f"the command-line sign-in waited longer than {CONFIRM_LIFETIME} s; start again"
            )
        return pending

    def loopback(self, code: str) -> str:
        """The CLI's listener, with the code and the CLI's own state (RFC 8252 §8.9)."""
        query = {"code": code, **({"state": self.cli_state} if self.cli_state else {})}
        return f"http://127.0.0.1:{self.cli_port}/callback?{urlencode(query)}"


def one_time_code(session: SessionOut, *, keys: HubKeys, now: int) -> str:
    """The session, sealed for the CLI's loopback listener: 60 seconds, single use."""
    payload = {
        "jti": secrets.token_urlsafe(16),
        "exp": now + CODE_LIFETIME,
        "session": session.model_dump(mode="json"),
    }
    return _seal(keys, KeyLabel.OIDC_CODE, payload)


# --- the provider: discovery, keys, token exchange -----------------------------------


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of the discovery document the hub uses (OpenID Connect Discovery §3)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


class ProviderCalls:
    """The sign-ins of one hub process that may talk to a provider at a time (decision
    0068): at most ``at_once`` take their turn together, at most ``waiting`` more wait
    for one; any other is refused at once ``429 sign-in-throttled`` with ``Retry-After``,
    as a password sign-in is when the hub has no place to check it (decision 0063,
    :class:`service.PasswordChecks`). A cancelled sign-in leaves its turn at once (its
    request to the provider is cancelled with it). One event loop (the hub's) uses it."""

    def __init__(self, *, at_once: int, waiting: int) -> None:
        self._turns = asyncio.Semaphore(at_once)
        self._capacity = at_once + waiting
        self._admitted = 0

    @property
    def admitted(self) -> int:
        return self._admitted

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        if self._admitted >= self._capacity:
            raise SignInsBusy(
                "too many sign-ins are waiting for the identity provider;"
                f" try again in {service.BUSY_RETRY_AFTER} seconds",
                headers={"Retry-After": str(service.BUSY_RETRY_AFTER)},
            )
        self._admitted += 1
        try:
            async with self._turns:
                yield
        finally:
            self._admitted -= 1


class _Published(Generic[T]):
    """A document the provider publishes (discovery, JWKS): kept ``ttl`` seconds,
    fetched by one caller at a time (the others wait and take its result), and asked for
    at most once in :data:`MIN_REFETCH` seconds whatever came of the last try: neither a
    flood of sign-ins, nor ID tokens naming unknown keys, nor a provider that fails make
    the hub ask more often."""

    def __init__(self, what: str, *, ttl: float, monotonic: Callable[[], float]) -> None:
        self._what = what
        self._ttl = ttl
        self._monotonic = monotonic
        self._lock = asyncio.Lock()
        self._kept: tuple[float, T] | None = None  # (fetched at, the document)
        self._tried_at: float | None = None

    def kept(self, *, within: float | None = None) -> T | None:
        """The document if it was fetched less than ``within`` (default ``ttl``) s ago."""
        if self._kept is None or self._monotonic() - self._kept[0] >= (within or self._ttl):
            return None
        return self._kept[1]

    async def get(self, fetch: Callable[[], Awaitable[T]], *, within: float | None = None) -> T:
        """The document fetched less than ``within`` seconds ago, or ``fetch()``ed now;
        but within :data:`MIN_REFETCH` s of the last try, the one kept (if fetched less
        than ``ttl`` ago) or :class:`OidcProviderUnavailable`, without asking."""
        async with self._lock:
            kept = self.kept(within=within)
            if kept is not None:
                return kept
            now = self._monotonic()
            if self._tried_at is not None and now - self._tried_at < MIN_REFETCH:
                kept = self.kept()
                if kept is not None:
                    return kept
                raise OidcProviderUnavailable(
                    f"the provider's {self._what} could not be fetched moments ago; the hub"
                    f" asks for it again at most every {MIN_REFETCH:g} s"
                )
            self._tried_at = now
            document = await fetch()
            self._kept = (now, document)
            return document


class Provider:
    """The configured provider. Its discovery document and JWKS are fetched with the
    hub's HTTP client and kept for ``ttl`` seconds; an ID token signed with a key id
    the cached JWKS lacks refetches it (the provider rotated its keys), at most once in
    :data:`MIN_REFETCH` seconds. What sign-ins ask of it is bounded (:attr:`calls`,
    :meth:`within_deadline`: decision 0068)."""

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        client_secret: str | None,
        http: httpx.AsyncClient,
        require_https: bool,
        ttl: float = METADATA_TTL,
        at_once: int = 4,
        waiting: int = 16,
        deadline: float = PROVIDER_DEADLINE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self.client_secret = client_secret
        self.calls = ProviderCalls(at_once=at_once, waiting=waiting)
        self.deadline = deadline
        self._http = http
        self._require_https = require_https
        self._metadata: _Published[ProviderMetadata] = _Published(
            "discovery document", ttl=ttl, monotonic=monotonic
        )
        self._keys: _Published[KeySet] = _Published("JWKS", ttl=ttl, monotonic=monotonic)

    @classmethod
    def from_settings(cls, settings: Settings, *, http: httpx.AsyncClient) -> "Provider":
        if not settings.oidc_issuer or not settings.oidc_client_id:
            raise OidcNotConfigured(
                "this hub has no OpenID Connect provider (oidc_issuer, oidc_client_id)"
            )
        return cls(
            issuer=settings.oidc_issuer,
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret,
            http=http,
            require_https=settings.is_production,
            at_once=settings.oidc_calls_at_once,
            waiting=settings.oidc_calls_waiting,
        )

    @classmethod
    def for_citizens(cls, settings: Settings, *, http: httpx.AsyncClient) -> "Provider":
        """The citizens' provider (``citizen_oidc_*``): the person's identifier is a
        claim of its ID tokens (decision 0032). No account is linked or made. Its
        sign-ins are bounded apart from the staff's: a flood of citizens' callbacks
        leaves the staff their turns."""
        if not settings.citizen_oidc_issuer or not settings.citizen_oidc_client_id:
            raise OidcNotConfigured(
                "this hub has no OpenID Connect provider for citizens"
                " (citizen_oidc_issuer, citizen_oidc_client_id)"
            )
        return cls(
            issuer=settings.citizen_oidc_issuer,
            client_id=settings.citizen_oidc_client_id,
            client_secret=settings.citizen_oidc_client_secret,
            http=http,
            require_https=settings.is_production,
            at_once=settings.oidc_calls_at_once,
            waiting=settings.oidc_calls_waiting,
        )

    def oauth_client(self, *, redirect_uri: str) -> Any:
        """Authlib's client for this provider (an ``httpx.AsyncClient``: use it in
        ``async with``). With a secret, it authenticates with ``client_secret_basic``;
        without, it is a public client and PKCE alone binds the code."""
        return AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=self.client_secret,
            scope="openid",
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=self.deadline,
            follow_redirects=False,
        )

    @asynccontextmanager
    async def within_deadline(self) -> AsyncIterator[None]:
        """Whatever the block asks of the provider, answered within :attr:`deadline`
        seconds in all, else :class:`OidcProviderUnavailable` (its requests cancelled)."""
        try:
            async with asyncio.timeout(self.deadline):
                yield
        except TimeoutError:
            raise OidcProviderUnavailable(
                f"the provider did not answer within {self.deadline:g} s"
            ) from None

    async def metadata(self) -> ProviderMetadata:
        return await self._metadata.get(self._fetch_metadata)

    async def metadata_in_turn(self) -> ProviderMetadata:
        """The discovery document for a step not yet in a turn (the start): the one kept,
        or fetched in a turn of :attr:`calls` and within the deadline."""
        kept = self._metadata.kept()
        if kept is not None:
            return kept
        async with self.calls.turn(), self.within_deadline():
            return await self.metadata()

    async def _fetch_metadata(self) -> ProviderMetadata:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._get_json(url)
        return _metadata_from(document, issuer=self.issuer, require_https=self._require_https)

    async def key_for(self, kid: str | None) -> Key:
        """The provider's key with this id (or its only key when the token names none)."""
        keys = await self._keys.get(self._fetch_keys)
        try:
            return keys.get_by_kid(kid)
        except InvalidKeyIdError:
            pass
        try:
            return (await self._keys.get(self._fetch_keys, within=MIN_REFETCH)).get_by_kid(kid)
        except InvalidKeyIdError:
            raise OidcIdTokenInvalid(
                "the ID token names a key the provider does not publish"
            ) from None

    async def _fetch_keys(self) -> KeySet:
        document = await self._get_json((await self.metadata()).jwks_uri)
        try:
            return KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, ValueError, KeyError, TypeError):
            raise OidcProviderUnavailable("the provider's JWKS is not a valid key set") from None

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url, timeout=self.deadline)
            response.raise_for_status()
            document = load_json(response.content, max_depth=32)
        except (httpx.HTTPError, ValueError) as error:
            raise OidcProviderUnavailable(
                f"the provider did not answer {url} properly ({type(error).__name__})"
            ) from None
        if not isinstance(document, dict):
            raise OidcProviderUnavailable(f"the provider's {url} is not a JSON object")
        return document


def _metadata_from(
    document: dict[str, Any], *, issuer: str, require_https: bool
) -> ProviderMetadata:
    """OpenID Connect Discovery §4.3: the document's issuer is exactly the one configured."""
    if document.get("issuer") != issuer:
        raise OidcProviderUnavailable("the discovery document names another issuer")
    endpoints: dict[str, str] = {}
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        value = document.get(name)
        if not isinstance(value, str) or not value.startswith(("https://", "http://")):
            raise OidcProviderUnavailable(f"the discovery document has no valid {name}")
        if require_https and not value.startswith("https://"):
            raise OidcProviderUnavailable(f"the provider's {name} is not an https:// URL")
        endpoints[name] = value
    return ProviderMetadata(issuer=issuer, **endpoints)


def callback_uri(settings: Settings) -> str:
    """The redirect URI to register at the provider."""
    return settings.issuer.rstrip("/") + CALLBACK_PATH


# --- the ID token (pure) ---------------------------------------------------------------


def _algorithm_of(key: Key) -> str:
    """The one algorithm the key is for: its ``alg``, or the one its type implies."""
    declared = key.get("alg")
    if declared is None:
        declared = {"RSA": "RS256", "EC": "ES256"}.get(key.key_type)
        if key.key_type == "EC" and key.get("crv") != "P-256":
            declared = None
    if declared not in ID_TOKEN_ALGORITHMS:
        raise OidcIdTokenInvalid(
            f"the provider's key is not for {' or '.join(ID_TOKEN_ALGORITHMS)}"
        )
    return str(declared)


def verify_id_token(
    id_token: str,
    *,
    key: Key,
    issuer: str,
    client_id: str,
    nonce: str,
    now: int,
    skew: int,
) -> str:
    """The ``sub`` of a valid ID token (:func:`verify_id_token_claims`)."""
    claims = verify_id_token_claims(
        id_token, key=key, issuer=issuer, client_id=client_id, nonce=nonce, now=now, skew=skew
    )
    return str(claims["sub"])


def verify_id_token_claims(
    id_token: str,
    *,
    key: Key,
    issuer: str,
    client_id: str,
    nonce: str,
    now: int,
    skew: int,
) -> dict[str, Any]:
    """The claims of a valid ID token (OpenID Connect Core §3.1.3.7): signed by ``key``
    with the algorithm the key is for (item 6), ``iss`` exactly the issuer (item 2),
    ``aud`` containing the client id and ``azp`` naming it when there are several
    audiences (items 3-5), unexpired (item 9), issued neither in the future nor before
    the login began (item 10), with the login's ``nonce`` (item 11)."""
    claims_registry = jwt.JWTClaimsRegistry(
        now=now,
        leeway=skew,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    algorithm = _algorithm_of(key)
    try:
        claims = jwt.decode(id_token, key, algorithms=[algorithm]).claims
        claims_registry.validate(claims)
    except (JoseError, ValueError, TypeError) as error:
        reason = error.error if isinstance(error, JoseError) else type(error).__name__
        raise OidcIdTokenInvalid(f"the ID token is not valid ({reason})") from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise OidcIdTokenInvalid("the ID token has several audiences and azp is not this hub")
    if claims["iat"] < now - LOGIN_LIFETIME - skew:
        raise OidcIdTokenInvalid("the ID token was issued before this sign-in began")
    subject = claims["sub"]
    if not isinstance(subject, str) or not 1 <= len(subject) <= 255:
        raise OidcIdTokenInvalid("the ID token's sub is not a string of 1 to 255 characters")
    return dict(claims)


# --- the flow ---------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackQuery:
    """What the provider sent back (RFC 6749 §4.1.2 and §4.1.2.1)."""

    state: str | None
    code: str | None
    error: str | None


@dataclass(frozen=True)
class SignedIn:
    session: SessionOut


async def start(
    provider: Provider,
    *,
    keys: HubKeys,
    settings: Settings,
    cli_port: int | None,
    cli_state: str | None,
    clock: Clock,
    redirect_uri: str | None = None,
) -> tuple[str, str]:
    """The provider's authorization URL and the sealed login for the cookie. The
    redirect URI is the API's callback unless another one (the console's) is given."""
    login = LoginState.new(cli_port=cli_port, cli_state=cli_state, now=int(clock.time()))
    metadata = await provider.metadata_in_turn()
    async with provider.oauth_client(redirect_uri=redirect_uri or callback_uri(settings)) as client:
        url, _ = client.create_authorization_url(
            metadata.authorization_endpoint,
            state=login.state,
            code_verifier=login.verifier,
            nonce=login.nonce,
        )
    return str(url), login.seal(keys)


async def finish(
    provider: Provider,
    *,
    cookie: str | None,
    query: CallbackQuery,
    sessions: async_sessionmaker[AsyncSession],
    jti_register: SingleUseRegister,
    keys: HubKeys,
    settings: Settings,
    scope: AuditScope,
    clock: Clock,
    redirect_uri: str | None = None,
) -> SignedIn | CliConfirmation:
    """The callback: check the login, exchange the code, check the ID token, start a
    session for the linked person; for a command-line login, no session yet but the
    sign-in that waits for the person's confirmation (:func:`confirm`). Every refusal
    raises (and is audited)."""
    claims, login = await verified_claims(
        provider,
        cookie=cookie,
        query=query,
        jti_register=jti_register,
        keys=keys,
        redirect_uri=redirect_uri or callback_uri(settings),
        skew=settings.clock_skew,
        clock=clock,
    )
    person = await _linked_person(
        sessions, issuer=provider.issuer, subject=str(claims["sub"]), scope=scope
    )
    if login.cli_port is not None:
        return CliConfirmation.new(person=person.username, login=login, now=int(clock.time()))
    return SignedIn(
        await _start_session(sessions, person=person, settings=settings, scope=scope, clock=clock)
    )


async def confirm(
    sealed: str | None,
    *,
    presented: str | None,
    sessions: async_sessionmaker[AsyncSession],
    jti_register: SingleUseRegister,
    keys: HubKeys,
    settings: Settings,
    scope: AuditScope,
    clock: Clock,
) -> str:
    """The person said yes to a command-line sign-in: the CLI's loopback URL with a
    one-time code for a new session. Refused (:class:`OidcConfirmationRefused`) unless
    this browser's cookie holds a sign-in that waits, ``presented`` is its token, and it
    was not confirmed before; the account must still be active."""
    pending = CliConfirmation.open(sealed, keys=keys, now=int(clock.time()), scope=scope)
    if not hmac.compare_digest((presented or "").encode(), pending.token.encode()):
        raise OidcConfirmationRefused("the form is not the one the hub showed for this sign-in")
    if not await jti_register.spend(
        _spend_key("confirm", pending.token), expires_at=_at(pending.expires)
    ):
        raise OidcConfirmationRefused("this command-line sign-in was already confirmed")
    async with sessions() as session:
        person = await repository.person_by_username(session, pending.person)
    if person is None:
        raise OidcAccountNotLinked("the account of this sign-in is gone")
    if person.status != "active":
        raise OidcAccountDisabled("the account is disabled")
    out = await _start_session(sessions, person=person, settings=settings, scope=scope, clock=clock)
    return pending.loopback(one_time_code(out, keys=keys, now=int(clock.time())))


async def _start_session(
    sessions: async_sessionmaker[AsyncSession],
    *,
    person: Person,
    settings: Settings,
    scope: AuditScope,
    clock: Clock,
) -> SessionOut:
    async with sessions() as session:
        await session.connection(execution_options={WRITE_OPTION: True})
        out = await service.start_session(
            session, person=person, method="oidc", settings=settings, scope=scope, clock=clock
        )
        await session.commit()
    return out


async def verified_claims(
    provider: Provider,
    *,
    cookie: str | None,
    query: CallbackQuery,
    jti_register: SingleUseRegister,
    keys: HubKeys,
    redirect_uri: str,
    skew: int,
    clock: Clock,
) -> tuple[dict[str, Any], LoginState]:
    """The steps of every callback, for people and citizens alike: the login of this
    browser, its ``state`` spent once, the code exchanged with the PKCE verifier, and
    the ID token's claims once checked (signature, ``iss``, ``aud``, times, ``nonce``).

    A callback this browser's login cookie does not hold is refused first, at the cost
    of opening the cookie: no write, no request to the provider. The others wait for
    a turn with the provider (``429 sign-in-throttled`` when too many wait) before the
    state is spent, and the provider has :attr:`Provider.deadline` seconds in all for
    the code and the keys (decision 0068)."""
    login = LoginState.open(cookie, state=query.state, keys=keys, now=int(clock.time()))
    async with provider.calls.turn():
        if not await jti_register.spend(
            _spend_key("state", login.state), expires_at=_at(login.expires)
        ):
            raise OidcStateInvalid("this sign-in was already completed; start again")
        if query.error is not None:
            raise OidcProviderRefused(f"the provider refused the sign-in ({_safe(query.error)})")
        if not query.code:
            raise OidcProviderRefused("the provider sent back neither a code nor an error")
        async with provider.within_deadline():
            id_token = await _exchange(
                provider, redirect_uri=redirect_uri, login=login, code=query.code
            )
            claims = await _verified_claims(provider, id_token, login=login, skew=skew, clock=clock)
    return claims, login


def _safe(error: str) -> str:
    """RFC 6749 §4.1.2.1 error codes are short ASCII; anything else is not echoed."""
    cleaned = "".join(c for c in error[:64] if c.isalnum() or c in "_-.")
    return cleaned or "unnamed error"


async def _exchange(provider: Provider, *, redirect_uri: str, login: LoginState, code: str) -> str:
    """RFC 6749 §4.1.3 with the PKCE verifier (RFC 7636 §4.5): the ID token."""
    metadata = await provider.metadata()
    try:
        async with provider.oauth_client(redirect_uri=redirect_uri) as client:
            token = await client.fetch_token(
                metadata.token_endpoint,
                grant_type="authorization_code",
                code=code,
                code_verifier=login.verifier,
            )
    except OAuthError as error:
        raise OidcProviderRefused(
            f"the provider's token endpoint refused the code ({_safe(str(error.error))})"
        ) from None
    except (httpx.HTTPError, ValueError) as error:
        raise OidcProviderUnavailable(
            f"the provider's token endpoint did not answer properly ({type(error).__name__})"
        ) from None
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise OidcProviderRefused("the provider's token response has no ID token")
    return id_token


async def _verified_claims(
    provider: Provider, id_token: str, *, login: LoginState, skew: int, clock: Clock
) -> dict[str, Any]:
    try:
        header, _ = peek_header_and_claims(id_token)
    except ValueError:
        raise OidcIdTokenInvalid("the ID token is not a signed JWT") from None
    kid = header.get("kid")
    key = await provider.key_for(kid if isinstance(kid, str) else None)
    return verify_id_token_claims(
        id_token,
        key=key,
        issuer=provider.issuer,
        client_id=provider.client_id,
        nonce=login.nonce,
        now=int(clock.time()),
        skew=skew,
    )


async def _linked_person(
    sessions: async_sessionmaker[AsyncSession], *, issuer: str, subject: str, scope: AuditScope
) -> Person:
    """Only identities an administrator linked sign in: no account is made here."""
    async with sessions() as session:
        person = await repository.person_by_oidc(session, issuer=issuer, subject=subject)
    if person is None:
        raise OidcAccountNotLinked(
            f"no account on this hub is linked to your identity at the provider (subject"
            f" {subject!r}); give it to an administrator, who links it to your account"
        )
    scope.note(person=person.username)
    if person.status != "active":
        raise OidcAccountDisabled("the account is disabled")
    return person


async def redeem(
    code: str, *, keys: HubKeys, jti_register: SingleUseRegister, scope: AuditScope, clock: Clock
) -> SessionOut:
    """The session a one-time code carries: once, within 60 seconds."""
    payload = _unseal(keys, KeyLabel.OIDC_CODE, code)
    if payload is None:
        raise OidcCodeInvalid("the sign-in code is not one this hub issued")
    session = SessionOut.model_validate(payload["session"])
    scope.note(person=session.person.username)
    expires = int(payload["exp"])
    if expires <= int(clock.time()):
        raise OidcCodeInvalid(f"the sign-in code is older than {CODE_LIFETIME} s; sign in again")
    if not await jti_register.spend(
        _spend_key("code", str(payload["jti"])), expires_at=_at(expires)
    ):
        raise OidcCodeInvalid("the sign-in code was already used")
    await scope.record_success()
    return session
