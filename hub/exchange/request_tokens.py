"""The short-lived token with which the hub asks an owner's adapter (docs/protocol.md §4).

It binds the request: who asks (``sub``), for which item, version and purpose, and
about whom (``subject_sha256``, so that the raw identifier stays out of the token,
which adapters may log). Pure: no I/O.
"""

import base64
import hashlib
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
    request_id: str,
    now: int,
    lifetime: int,
) -> str:
    header = {"typ": REQUEST_TOKEN_TYPE, "alg": "ES256", "kid": key.kid}
    claims = {
        "iss": issuer,
        "aud": owner,
        "sub": consumer,
        "item": item,
        "version": version,
        "purpose": purpose,
        "subject_sha256": subject_sha256(subject),
        "request_id": request_id,
        "jti": uuid4().hex,
        "iat": now,
        "exp": now + lifetime,
    }
    return jwt.encode(header, claims, key, algorithms=["ES256"])
