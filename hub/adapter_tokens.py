"""What every token the hub signs for an adapter has in common (docs/protocol.md §4, §7):
a type, fresh single-use ``jti``, ``iat`` and ``exp``, and a subject by its SHA-256 only.

The request token (onceonly.hub.exchange.request_tokens) and the event delivery token
(onceonly.hub.events.tokens) are built on it. Pure: no I/O.
"""

import hashlib
from collections.abc import Mapping
from uuid import uuid4

from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey
from joserfc.jws import JWSRegistry

from onceonly.hub.kit import base64url, es256

_ES256 = JWSRegistry(algorithms=["ES256"]).get_alg("ES256")


def subject_sha256(subject: str) -> str:
    return base64url.encode(hashlib.sha256(subject.encode()).digest())


def sign_hub_token(
    key: ECKey, *, typ: str, claims: Mapping[str, object], now: int, lifetime: int
) -> str:
    """A short-lived ES256 token the hub sends to an adapter (a request or an event
    delivery): ``claims`` plus a fresh single-use ``jti``, ``iat`` and ``exp``."""
    header = {"typ": typ, "alg": "ES256", "kid": key.kid}
    timed = {**claims, "jti": uuid4().hex, "iat": now, "exp": now + lifetime}
    _ES256.check_key(key)  # as joserfc checked it: a P-256 key fit for ES256 signatures
    private = key.get_op_key("sign")
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise TypeError("the hub's signing key is not an EC private key")
    return es256.sign(private, header, timed)
