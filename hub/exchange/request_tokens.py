"""The short-lived token with which the hub asks an owner's adapter (docs/protocol.md §4).

It binds the request: who asks (``sub``), for which item, version and purpose, and
about whom (``subject_sha256``, so that the raw identifier stays out of the token,
which adapters may log). It also tells the owner the pseudonym the hub's audit entry
will keep for the subject (``subject_pseudonym``), so that the owner's trail can be
compared with the entry (docs/audit.md, "Both sides keep evidence"). Pure: no I/O.
"""

import base64
import hashlib
from collections.abc import Mapping
from uuid import uuid4

from joserfc import jwt
from joserfc.jwk import ECKey

REQUEST_TOKEN_TYPE = "onceonly-req+jwt"


def subject_sha256(subject: str) -> str:
    digest = hashlib.sha256(subject.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


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


def sign_hub_token(
    key: ECKey, *, typ: str, claims: Mapping[str, object], now: int, lifetime: int
) -> str:
    """A short-lived ES256 token the hub sends to an adapter (a request or an event
    delivery): ``claims`` plus a fresh single-use ``jti``, ``iat`` and ``exp``."""
    header = {"typ": typ, "alg": "ES256", "kid": key.kid}
    timed = {**claims, "jti": uuid4().hex, "iat": now, "exp": now + lifetime}
    return jwt.encode(header, timed, key, algorithms=["ES256"])
