"""The signature on an event delivery (docs/protocol.md §7). Pure: no I/O.

Like the request token of an exchange, it binds the delivery: which event, for
which department, about which item and kind, when it was published (``published_at``,
the body's RFC 3339 text, by which receivers order events), and the subject by its
SHA-256 only.
"""

from joserfc.jwk import ECKey

from onceonly.hub.adapter_tokens import sign_hub_token, subject_sha256

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
    published_at: str,
    now: int,
    lifetime: int,
) -> str:
    claims = {
        "iss": issuer,
        "aud": subscriber,
        "sub": owner,
        "event_id": event_id,
        "item": item,
        "kind": kind,
        "subject_sha256": subject_sha256(subject),
        "published_at": published_at,  # the body's text, compared as text by the adapter
    }
    # Every attempt gets its own jti: a retry must not look like a replay to the adapter.
    return sign_hub_token(key, typ=EVENT_TOKEN_TYPE, claims=claims, now=now, lifetime=lifetime)
