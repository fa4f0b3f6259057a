"""Authentication and authorization errors, with their RFC error codes.

Token endpoint errors carry RFC 6749 §5.2 ``error``/``error_description`` members
inside the RFC 9457 problem body. Resource errors carry an RFC 6750 §3
``WWW-Authenticate`` challenge.
"""

from collections.abc import Mapping
from typing import Any, ClassVar

from hub.errors import HubError


class OAuthError(HubError):
    """An error of the token endpoint (RFC 6749 §5.2)."""

    error: ClassVar[str] = "invalid_request"
    status = 400

    def __init__(self, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        extra: dict[str, Any] = {"error": self.error, "error_description": detail}
        super().__init__(detail, headers=headers, extra=extra)


class InvalidTokenRequest(OAuthError):
    error = "invalid_request"
    slug = "oauth-invalid-request"
    title = "Invalid token request"


class InvalidClient(OAuthError):
    """Client authentication failed (RFC 6749 §5.2): 401."""

    error = "invalid_client"
    status = 401
    slug = "oauth-invalid-client"
    title = "Client authentication failed"


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"
    slug = "oauth-unsupported-grant-type"
    title = "Unsupported grant type"


class InvalidScope(OAuthError):
    error = "invalid_scope"
    slug = "oauth-invalid-scope"
    title = "Invalid scope"


class InvalidToken(HubError):
    """No usable access token (RFC 6750 §3.1 ``invalid_token``): 401."""

    status = 401
    slug = "invalid-token"
    title = "Invalid or missing access token"

    def __init__(self, detail: str, *, token_sent: bool = True) -> None:
        # RFC 6750 §3.1: with no token at all, the challenge carries no error code.
        challenge = 'Bearer realm="onceonly"'
        if token_sent:
            quoted = detail.replace('"', "'").replace("\\", "/")
            challenge += f', error="invalid_token", error_description="{quoted}"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class InsufficientScope(HubError):
    """RFC 6750 §3.1 ``insufficient_scope``: 403."""

    status = 403
    slug = "insufficient-scope"
    title = "Insufficient scope"

    def __init__(self, scope: str) -> None:
        super().__init__(
            f"the access token does not carry the scope {scope}",
            headers={
                "WWW-Authenticate": (
                    f'Bearer realm="onceonly", error="insufficient_scope", scope="{scope}"'
                )
            },
        )


class NotAdministrator(HubError):
    status = 401
    slug = "not-administrator"
    title = "Administrator credentials required"
