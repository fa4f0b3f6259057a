"""A minimal, real OpenID Connect provider for tests, served on loopback.

Discovery, a JWKS (an RSA key made by joserfc), an authorization endpoint that signs
the configured subject in at once (it checks the client, the redirect URI and the
PKCE challenge, and passes ``state`` through), and a token endpoint that checks the
client's credentials, the redirect URI and the PKCE verifier, and answers with an ID
token carrying the nonce. ``Behaviour`` makes it misbehave on purpose. It counts the
requests it is sent (``requests``, by path) and the most token requests it answered
at once (``most_at_once``).
"""

import asyncio
import base64
import hashlib
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from joserfc import jwt
from joserfc.jwk import RSAKey

from onceonly.hub.cli.servers import loopback_socket, serve_in_thread, url_of

CLIENT_ID = "onceonly-hub"
CLIENT_SECRET = "a-client-secret-for-tests"


@dataclass
class Behaviour:
    """What the provider does on the next sign-in (tests set a fresh one)."""

    subject: str = "sub-alice"
    nonce: str | None = None  # None: the nonce of the authorization request
    audience: str | list[str] = CLIENT_ID
    lifetime: int = 300  # seconds from now to exp; negative: already expired
    foreign_key: bool = False  # sign with a key the JWKS does not hold (same kid)
    kid: str | None = None  # sign with a key the JWKS does not hold, named this
    token_delay: float = 0.0  # seconds the token endpoint takes to answer
    token_drip: float | None = None  # answer the token request a byte every so many s
    jwks_delay: float = 0.0  # seconds the JWKS takes to come
    jwks_status: int = 200  # anything else: the JWKS endpoint fails so
    authorize_error: str | None = None  # answer the authorization with ?error=…
    token_error: str | None = None  # the token endpoint refuses with this error code
    claims: dict[str, Any] = field(default_factory=dict)  # more claims in the ID token


@dataclass
class Provider:
    url: str
    behaviour: Behaviour
    key: RSAKey
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    redirect_uris: set[str] = field(default_factory=set)
    requests: Counter[str] = field(default_factory=Counter)  # by path
    at_once: int = 0  # token requests being answered
    most_at_once: int = 0

    def reset_counts(self) -> None:
        self.requests.clear()
        self.most_at_once = 0


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _problem(error: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status)


def _id_token(provider: Provider, grant: dict[str, Any]) -> str:
    behaviour = provider.behaviour
    now = int(time.time())
    claims = {
        "iss": provider.url,
        "sub": behaviour.subject,
        "aud": behaviour.audience,
        "iat": now,
        "exp": now + behaviour.lifetime,
        "nonce": behaviour.nonce if behaviour.nonce is not None else grant["nonce"],
        **behaviour.claims,
    }
    key, kid = provider.key, behaviour.kid or provider.key.kid
    if behaviour.foreign_key or behaviour.kid is not None:
        key = RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256"})
    return jwt.encode({"alg": "RS256", "kid": kid}, claims, key)


async def _dripped(every: float) -> AsyncIterator[bytes]:
    """A JSON object that takes a minute to come, one byte at a time."""
    yield b"{"
    for _ in range(int(60 / every)):
        await asyncio.sleep(every)
        yield b" "
    yield b"}"


def _app(provider: Provider) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Any:
        provider.requests[request.url.path] += 1
        return await call_next(request)

    @app.get("/.well-known/openid-configuration")
    async def discovery() -> dict[str, Any]:
        return {
            "issuer": provider.url,
            "authorization_endpoint": f"{provider.url}/authorize",
            "token_endpoint": f"{provider.url}/token",
            "jwks_uri": f"{provider.url}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
        }

    @app.get("/jwks")
    async def jwks() -> JSONResponse:
        await asyncio.sleep(provider.behaviour.jwks_delay)
        body = {"keys": [provider.key.as_dict(private=False)]}
        return JSONResponse(body, status_code=provider.behaviour.jwks_status)

    @app.get("/authorize", response_model=None)
    async def authorize(request: Request) -> JSONResponse | RedirectResponse:
        q = request.query_params
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
            return _problem("unauthorized_client")
        if q.get("redirect_uri") not in provider.redirect_uris:
            return _problem("invalid_redirect_uri")
        if "openid" not in q.get("scope", "").split() or not q.get("nonce"):
            return _problem("invalid_scope")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return _problem("invalid_request")
        answer = {"state": q.get("state", "")}
        if provider.behaviour.authorize_error:
            answer["error"] = provider.behaviour.authorize_error
        else:
            code = secrets.token_urlsafe(16)
            provider.codes[code] = dict(q)
            answer["code"] = code
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode(answer)}", status_code=302)

    @app.post("/token", response_model=None)
    async def token(request: Request) -> JSONResponse | StreamingResponse | dict[str, Any]:
        provider.at_once += 1
        provider.most_at_once = max(provider.most_at_once, provider.at_once)
        try:
            await asyncio.sleep(provider.behaviour.token_delay)
            return await answer_token(request)
        finally:
            provider.at_once -= 1

    async def answer_token(request: Request) -> JSONResponse | StreamingResponse | dict[str, Any]:
        if provider.behaviour.token_drip is not None:
            dripped = _dripped(provider.behaviour.token_drip)
            return StreamingResponse(dripped, media_type="application/json")
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return _problem("invalid_client", 401)
        grant = provider.codes.pop(form.get("code", ""), None)  # single use
        if form.get("grant_type") != "authorization_code" or grant is None:
            return _problem("invalid_grant")
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return _problem("invalid_grant")
        if _s256(form.get("code_verifier", "")) != grant["code_challenge"]:
            return _problem("invalid_grant")
        if provider.behaviour.token_error:
            return _problem(provider.behaviour.token_error)
        return {
            "access_token": secrets.token_urlsafe(16),
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": _id_token(provider, grant),
        }

    return app


@contextmanager
def running_provider() -> Iterator[Provider]:
    """A provider on a loopback port; register the client's redirect URIs in
    ``redirect_uris`` before signing in."""
    sock = loopback_socket()
    key = RSAKey.generate_key(2048, parameters={"alg": "RS256", "use": "sig"}, auto_kid=True)
    provider = Provider(url=url_of(sock), behaviour=Behaviour(), key=key)
    with serve_in_thread(_app(provider), sock):
        yield provider
