"""The signature on an event delivery (docs/protocol.md §7). Pure: no I/O.

Like the request token of an exchange, it binds the delivery: which event, for
which department, about which item and kind, and the subject by its SHA-256 only.
"""

from joserfc import jwt
from joserfc.jwk import ECKey

from hub.exchange.request_tokens import subject_sha256

EVENT_TOKEN_TYPE = "onceonly-event+jwt"


def mint_event_token(
    *,
    key: ECKey,
    issuer: str,
    subscriber: str,
    owner: str,
    event_id: str,
    item: str,
    kind: str,
    subject: str,
    now: int,
    lifetime: int,
) -> str:
    header = {"typ": EVENT_TOKEN_TYPE, "alg": "ES256", "kid": key.kid}
    claims = {
        "iss": issuer,
        "aud": subscriber,
        "sub": owner,
        "event_id": event_id,
        "item": item,
        "kind": kind,
        "subject_sha256": subject_sha256(subject),
        "jti": f"{event_id}.{subscriber}.{now}",
        "iat": now,
        "exp": now + lifetime,
    }
    return jwt.encode(header, claims, key, algorithms=["ES256"])
