"""The short-lived token with which the hub asks an owner's adapter (docs/protocol.md §4).

It binds the request: who asks (``sub``), for which item, version and purpose, and
about whom (``subject_sha256``, so that the raw identifier stays out of the token,
which adapters may log). It also tells the owner the pseudonym the hub's audit entry
will keep for the subject (``subject_pseudonym``), so that the owner's trail can be
compared with the entry (docs/audit.md, "Both sides keep evidence"). Pure: no I/O.
"""

from joserfc.jwk import ECKey

from onceonly.hub.adapter_tokens import sign_hub_token, subject_sha256

REQUEST_TOKEN_TYPE = "onceonly-req+jwt"


def mint_request_token(
    *,
    key: ECKey,
    issuer: str,
    owner: str,
    consumer: str,
    item: str,
    version: int,
    purpose: str,
    subject: str,
    subject_pseudonym: str | None = None,
    request_id: str,
    now: int,
    lifetime: int,
) -> str:
    claims = {
        "iss": issuer,
        "aud": owner,
        "sub": consumer,
        "item": item,
        "version": version,
        "purpose": purpose,
        "subject_sha256": subject_sha256(subject),
        "request_id": request_id,
    }
    if subject_pseudonym is not None:
        claims["subject_pseudonym"] = subject_pseudonym
    return sign_hub_token(key, typ=REQUEST_TOKEN_TYPE, claims=claims, now=now, lifetime=lifetime)
