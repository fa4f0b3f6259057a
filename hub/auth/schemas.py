"""Bodies of the OAuth endpoints (RFC 6749 §5.1, RFC 7662 §2.2, RFC 8414 §2) and of a
client's own registration."""

from typing import Any

from pydantic import BaseModel, ConfigDict


class TokenResponse(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    scope: str


class IntrospectionResponse(BaseModel):
    """RFC 7662 §2.2; members without a value are left out of the JSON."""

    active: bool
    scope: str | None = None
    client_id: str | None = None
    token_type: str | None = None
    exp: int | None = None
    iat: int | None = None
    sub: str | None = None
    aud: str | None = None
    iss: str | None = None
    jti: str | None = None
    department: str | None = None
    cnf: dict[str, str] | None = None


class ServerMetadata(BaseModel):
    issuer: str
    token_endpoint: str
    jwks_uri: str
    grant_types_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    token_endpoint_auth_signing_alg_values_supported: list[str]
    introspection_endpoint: str
    introspection_endpoint_auth_methods_supported: list[str]
    introspection_endpoint_auth_signing_alg_values_supported: list[str]
    revocation_endpoint: str
    revocation_endpoint_auth_methods_supported: list[str]
    revocation_endpoint_auth_signing_alg_values_supported: list[str]
    dpop_signing_alg_values_supported: list[str]
    tls_client_certificate_bound_access_tokens: bool
    response_types_supported: list[str]
    scopes_supported: list[str]
    service_documentation: str


class JwksIn(BaseModel):
    """A JSON Web Key Set (RFC 7517 §5): the client's public keys."""

    model_config = ConfigDict(extra="forbid")

    keys: list[dict[str, Any]]


class OwnClientOut(BaseModel):
    client_id: str
    department: str
    kids: list[str]


class JwksOut(BaseModel):
    """The hub's public signing keys (RFC 7517 §5)."""

    keys: list[dict[str, Any]]


# The OAuth endpoints read their form themselves (duplicate parameters refused,
# RFC 6749 §3.2); these describe it for the OpenAPI document.
_CLIENT_AUTHENTICATION: dict[str, Any] = {
    "client_assertion_type": {
        "type": "string",
        "const": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    },
    "client_assertion": {"type": "string", "description": "RFC 7523 §2.2: a signed JWT"},
    "client_id": {
        "type": "string",
        "description": "with certificate authentication (RFC 8705) instead of an assertion",
    },
}
TOKEN_FORM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "grant_type": {"type": "string", "const": "client_credentials"},
        "scope": {"type": "string", "description": "space-separated; default: every scope held"},
        **_CLIENT_AUTHENTICATION,
    },
    "required": ["grant_type"],
}
TOKEN_HOLDER_FORM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "token": {"type": "string"},
        "token_type_hint": {"type": "string", "description": "accepted and ignored"},
        **_CLIENT_AUTHENTICATION,
    },
    "required": ["token"],
}


def form_body(schema: dict[str, Any]) -> dict[str, Any]:
    """A route's ``openapi_extra``: its body is this form."""
    media_type = "application/x-www-form-urlencoded"
    return {"requestBody": {"required": True, "content": {media_type: {"schema": schema}}}}
