"""Authentication and authorization errors, with their RFC error codes.

Token endpoint errors carry RFC 6749 §5.2 ``error``/``error_description`` members
inside the RFC 9457 problem body. Resource errors carry an RFC 6750 §3
``WWW-Authenticate`` challenge.
"""

from collections.abc import Mapping
from typing import Any, ClassVar

from onceonly.hub.kit.problems import HubError
from onceonly.hub.kit.rate_limit import retry_after


class OAuthError(HubError):
    """An error of the token endpoint (RFC 6749 §5.2)."""

    error: ClassVar[str] = "invalid_request"
    status = 400

    def __init__(self, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        extra: dict[str, Any] = {"error": self.error, "error_description": description(detail)}
        # as the token answer itself (RFC 6749 §5.1): no cache keeps an OAuth answer
        super().__init__(
            detail, headers={"Cache-Control": "no-store", **(headers or {})}, extra=extra
        )


def description(detail: str) -> str:
    """``detail`` in the characters RFC 6749 §5.2 allows an ``error_description`` (and
    RFC 6750 §3 a challenge's): printable ASCII but ``"`` and ``\\`` (``'`` and ``/``
    instead), ``§`` written as "section ", any other character as ``?``. The problem's
    ``detail`` keeps the text as it is."""
    if detail.isascii() and '"' not in detail and "\\" not in detail and detail.isprintable():
        return detail
    text = detail.replace('"', "'").replace("\\", "/").replace("§", "section ")
    return "".join(char if " " <= char <= "~" else "?" for char in text)


class InvalidTokenRequest(OAuthError):
    error = "invalid_request"
    slug = "oauth-invalid-request"
    title = "Invalid token request"


# The challenge of the OAuth endpoints' 401 (RFC 9110 §11.6.1: every 401 names one
# applicable to the target). Clients authenticate there with private_key_jwt (or a TLS
# client certificate), which no HTTP authentication scheme expresses: the challenge's
# scheme is the method's registered name (RFC 7591 §2), never Basic or Bearer, which
# the endpoints do not take (decision 0073).
CLIENT_AUTHENTICATION_SCHEME = "private_key_jwt"


class InvalidClient(OAuthError):
    """Client authentication failed (RFC 6749 §5.2): 401, with a ``WWW-Authenticate``
    challenge of :data:`CLIENT_AUTHENTICATION_SCHEME` (decision 0073)."""

    error = "invalid_client"
    status = 401
    slug = "oauth-invalid-client"
    title = "Client authentication failed"

    def __init__(self, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        header = challenge(CLIENT_AUTHENTICATION_SCHEME, error=self.error, detail=detail)
        super().__init__(detail, headers={"WWW-Authenticate": header, **(headers or {})})


# The one answer to every failure that could tell whether a client id exists.
CLIENT_NOT_AUTHENTICATED = "the client could not be authenticated"


class ClientNotAuthenticated(HubError):
    """Why a client was not authenticated, for the audit log only: never an answer.

    An unknown client, a disabled one, and a signature or certificate that does not
    match the client's keys are all answered with one :class:`InvalidClient` (same
    status, type, title and detail: :meth:`answer`), so that the token endpoint tells
    nobody which client ids exist. The audit entry keeps the cause: its ``reason`` is
    the subclass's ``slug`` (RFC 6749 §5.2 leaves ``error_description`` to the
    server).
    """

    status = 401
    slug = "client-not-authenticated"
    title = "Client not authenticated"

    def answer(self) -> InvalidClient:
        return InvalidClient(CLIENT_NOT_AUTHENTICATED)


class UnknownClient(ClientNotAuthenticated):
    slug = "client-unknown"


class DisabledClient(ClientNotAuthenticated):
    slug = "client-disabled"


class ClientSignatureInvalid(ClientNotAuthenticated):
    """The assertion does not verify with any of the client's keys (or is no JWS an
    allowed algorithm signs)."""

    slug = "client-signature-invalid"


class ClientAssertionUnreadable(ClientNotAuthenticated):
    """The client assertion is no compact JWS (RFC 7515 §7.1) the hub can read. It is
    judged before any client is read, so the answer tells nobody whether a client id
    exists, and says what is wrong (decision 0075)."""

    slug = "client-assertion-unreadable"

    def answer(self) -> InvalidClient:
        return InvalidClient(self.detail)


class ClientAssertionAlgorithm(ClientAssertionUnreadable):
    """The assertion's ``alg`` is none the hub verifies client assertions with
    (``none``, ``HS256``...: RFC 8725 §3.1); judged, and answered, as an unreadable one."""

    slug = "client-assertion-algorithm"


class ClientCertificateUnregistered(ClientNotAuthenticated):
    """The TLS client certificate's key is not one of the client's (RFC 8705 §2.2)."""

    slug = "client-certificate-unregistered"


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"
    slug = "oauth-unsupported-grant-type"
    title = "Unsupported grant type"


class InvalidScope(OAuthError):
    error = "invalid_scope"
    slug = "oauth-invalid-scope"
    title = "Invalid scope"


class TokenRequestsThrottled(OAuthError):
    """Too many requests to the OAuth endpoints: 429 with ``Retry-After`` (decision 0051).

    RFC 6749 §5.2 has no code for it. ``slow_down`` is the code registered for token
    endpoint responses that means "ask less often" (RFC 8628 §3.5, §7.2);
    ``temporarily_unavailable`` would blame the hub, and is registered for the
    authorization endpoint only. Introspection (RFC 7662 §2.3) and revocation (RFC 7009
    §2.2.1) answer errors as the token endpoint does, so they use it too.
    """

    error = "slow_down"
    status = 429
    slug = "oauth-slow-down"
    title = "Too many token requests"

    def __init__(self, detail: str, *, wait: float, budget: str, audited: bool) -> None:
        seconds = retry_after(wait)
        super().__init__(
            f"{detail}; try again in {seconds} s",
            headers={"Retry-After": str(seconds), "Cache-Control": "no-store"},
        )
        self.budget = budget  # the metric's label: "client" or "address"
        # whether to audit it: a client's always (with its request, after it has
        # authenticated); an address's, the first under its key in a while
        self.audited = audited


class ClientNotFound(HubError):
    """An administrator named a client that is not registered."""

    status = 404
    slug = "client-not-found"
    title = "No such client"


class ClientTokensOutstanding(HubError):
    """A client disabled so recently that access tokens it held then may still live:
    it is enabled once they have expired (``Retry-After`` says when)."""

    status = 409
    slug = "client-tokens-outstanding"
    title = "The client's earlier tokens are still alive"


DPOP_ALGORITHMS = ("ES256", "Ed25519", "EdDSA", "PS256")


def challenge(
    scheme: str, *, error: str | None = None, detail: str = "", scope: str | None = None
) -> str:
    """An RFC 6750 §3 / RFC 9449 §7.1 ``WWW-Authenticate`` challenge: every DPoP one
    names the algorithms the hub takes (``algs``); ``scope``, the one a request needs."""
    parts = ['realm="onceonly"']
    if scheme == "DPoP":
        parts.append(f'algs="{" ".join(DPOP_ALGORITHMS)}"')
    if error:
        parts += [f'error="{error}"', f'error_description="{description(detail)}"']
    if scope is not None:
        parts.append(f'scope="{scope}"')
    return f"{scheme} " + ", ".join(parts)


class InvalidToken(HubError):
    """No usable access token (RFC 6750 §3.1, RFC 9449 §7.1 ``invalid_token``): 401.

    ``scheme`` names the challenge: ``DPoP`` where sender-constrained tokens are
    required or a DPoP token was sent, ``Bearer`` otherwise.
    """

    status = 401
    slug = "invalid-token"
    title = "Invalid or missing access token"

    def __init__(self, detail: str, *, token_sent: bool = True, scheme: str = "Bearer") -> None:
        # RFC 6750 §3.1: with no token at all, the challenge carries no error code.
        error = "invalid_token" if token_sent else None
        super().__init__(
            detail, headers={"WWW-Authenticate": challenge(scheme, error=error, detail=detail)}
        )


class InvalidDpopProof(HubError):
    """A missing or bad DPoP proof at a resource (RFC 9449 §7.1 ``invalid_dpop_proof``)."""

    status = 401
    slug = "invalid-dpop-proof"
    title = "Invalid DPoP proof"

    def __init__(self, detail: str) -> None:
        header = challenge("DPoP", error="invalid_dpop_proof", detail=detail)
        super().__init__(detail, headers={"WWW-Authenticate": header})


class UseDpopNonce(HubError):
    """The resource wants a proof with the server's nonce (RFC 9449 §9): 401."""

    status = 401
    slug = "use-dpop-nonce"
    title = "DPoP nonce required"

    def __init__(self, detail: str, *, nonce: str) -> None:
        header = challenge("DPoP", error="use_dpop_nonce", detail=detail)
        super().__init__(detail, headers={"WWW-Authenticate": header, "DPoP-Nonce": nonce})


class InvalidDpopProofGrant(OAuthError):
    """A bad DPoP proof at the token endpoint (RFC 9449 §5): 400 ``invalid_dpop_proof``."""

    error = "invalid_dpop_proof"
    slug = "oauth-invalid-dpop-proof"
    title = "Invalid DPoP proof"


class UseDpopNonceGrant(OAuthError):
    """The token endpoint wants a proof with its nonce (RFC 9449 §8): 400."""

    error = "use_dpop_nonce"
    slug = "oauth-use-dpop-nonce"
    title = "DPoP nonce required"

    def __init__(self, detail: str, *, nonce: str) -> None:
        super().__init__(detail, headers={"DPoP-Nonce": nonce, "Cache-Control": "no-store"})


class InsufficientScope(HubError):
    """RFC 6750 §3.1 ``insufficient_scope``: 403."""

    status = 403
    slug = "insufficient-scope"
    title = "Insufficient scope"

    def __init__(self, scope: str, *, scheme: str = "Bearer") -> None:
        detail = f"the access token does not carry the scope {scope}"
        header = challenge(scheme, error="insufficient_scope", detail=detail, scope=scope)
        super().__init__(detail, headers={"WWW-Authenticate": header})
