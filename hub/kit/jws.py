"""Reading a compact JWS before verifying it (RFC 7515 §7.1), to find the key it needs.

Nothing here verifies a signature: the header and claims it returns are claims, to be
trusted only once the caller has verified the JWS with the key they point to.

Each compact JWS the hub receives is read here before it is verified (DPoP proofs,
client assertions, access tokens, ID tokens), so a rule here holds for all of them: a
member named twice, in the header as in the claims, is refused. RFC 7515 §4 lets a
parser either refuse duplicate header parameter names or keep the last one; the hub
refuses them, as it refuses duplicate claims (RFC 7519 §4), so that no two readers of
one header see different values.
"""

from typing import Any

from joserfc import jws
from joserfc.errors import JoseError

from onceonly.hub.kit import base64url
from onceonly.hub.kit.nul import body_nul
from onceonly.hub.kit.untrusted_json import load_json

MAX_JWT_BYTES = 8192
MAX_CLAIMS_DEPTH = 16  # claims are flat; a deep one is an attack on the parser


def peek_header_and_claims(
    compact: str, *, registry: jws.JWSRegistry | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
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
        obj = jws.extract_compact(compact.encode(), registry=registry)
    except JoseError as error:
        raise ValueError(f"not a compact JWS ({safe_reason(error)})") from None
    except RecursionError:  # a header nested too deep for the JSON parser
        raise ValueError("the JWS header is nested too deeply") from None
    headers = _protected_header(parts[0])
    if body_nul(obj.payload) is not None:  # no database column takes U+0000
        raise ValueError("the JWT claims hold a NUL character (U+0000)")
    claims = load_json(obj.payload, max_depth=MAX_CLAIMS_DEPTH)  # UnsafeJson is a ValueError
    if not isinstance(claims, dict):
        raise ValueError("the JWT claims are not a JSON object")
    if any("\x00" in str(value) for value in headers.values()):
        raise ValueError("the JWS header holds a NUL character (U+0000)")
    return headers, claims


def _protected_header(segment: str) -> dict[str, Any]:
    """The protected header (RFC 7515 §5.2 steps 2-4) as the strict reader reads it:
    duplicate member names refused (joserfc, which has read it already, keeps the last)."""
    try:
        header = load_json(base64url.decode(segment), max_depth=MAX_CLAIMS_DEPTH)
    except ValueError as error:  # UnsafeJson; its reasons name a member, never a value
        raise ValueError(f"the JWS header is {error}") from None
    if not isinstance(header, dict):
        raise ValueError("the JWS header is not a JSON object")
    return header


def safe_reason(error: Exception) -> str:
    """A short, safe reason: never the token itself."""
    if isinstance(error, JoseError):
        return error.error or type(error).__name__
    return str(error)[:200]
