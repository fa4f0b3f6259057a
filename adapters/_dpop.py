"""DPoP proofs (RFC 9449) for the consumer SDK: a key pair and the proofs it signs.

`HubClient` makes and uses one for you; use `DPoPKey` directly only when you talk to
the hub over raw HTTP (tests, other tools).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from joserfc import jws
from joserfc.jwk import ECKey

from . import base64url
from ._keys import SigningKey, algorithm_of

__all__ = ["DPoPKey"]


def access_token_hash(token: str) -> str:
    """``ath`` (RFC 9449 §4.2): base64url SHA-256 of the ASCII access token."""
    digest = hashlib.sha256(token.encode("ascii")).digest()
    return base64url.encode(digest)


class DPoPKey:
    """A key that proves possession for DPoP-bound tokens (RFC 9449 §4).

    The key never leaves the process; the hub binds tokens to its RFC 7638
    thumbprint (``cnf.jkt``). Example::

        key = DPoPKey.generate()
        response = httpx.post(url, json=body, headers=key.headers("POST", url, token))
    """

    def __init__(self, key: SigningKey) -> None:
        if not key.is_private:
            raise ValueError("a DPoP key must hold its private half")
        self._key = key
        self._algorithm = algorithm_of(key)
        self._public: dict[str, Any] = {
            name: value
            for name, value in key.as_dict(private=False).items()
            if name not in ("kid", "alg", "use", "key_ops")
        }
        self.thumbprint = str(key.thumbprint())

    @classmethod
    def generate(cls) -> DPoPKey:
        """A fresh EC P-256 key (ES256), the cheapest to sign and verify."""
        return cls(ECKey.generate_key("P-256"))

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
    ) -> str:
        """A proof for one request (RFC 9449 §4.2): ``htu`` without query or fragment,
        ``ath`` when an access token goes with it, ``nonce`` when the hub asked for one."""
        claims: dict[str, Any] = {
            "jti": uuid.uuid4().hex,
            "htm": method.upper(),
            "htu": _target_uri(url),
            "iat": int(time.time()),
        }
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        header = {"typ": "dpop+jwt", "alg": self._algorithm, "jwk": self._public}
        payload = _json(claims)
        return jws.serialize_compact(header, payload, self._key, algorithms=[self._algorithm])

    def headers(
        self, method: str, url: str, access_token: str, *, nonce: str | None = None
    ) -> dict[str, str]:
        """``Authorization: DPoP <token>`` and its ``DPoP`` proof, for a resource request."""
        return {
            "Authorization": f"DPoP {access_token}",
            "DPoP": self.proof(method, url, access_token=access_token, nonce=nonce),
        }


def _target_uri(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _json(claims: dict[str, Any]) -> bytes:
    return json.dumps(claims, separators=(",", ":")).encode()
