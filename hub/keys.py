"""The hub's keys, loaded once at start-up from ``<data_dir>/keys``.

- ``signing.jwk``: EC P-256 key that signs access tokens and adapter request tokens;
  its kid is the RFC 7638 thumbprint.
- ``pseudonym.key``: the HMAC-SHA-256 secret that turns subject identifiers into
  pseudonyms for the audit log.
- ``admin-token``: the bootstrap administrator's bearer secret (until people sign in).

In development missing keys are created (mode 0600); in production they must have
been provisioned with ``onceonly keys init``.
"""

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from joserfc.jwk import ECKey, KeySet

from hub.kit import keyfiles


@dataclass(frozen=True)
class HubKeys:
    signing: ECKey
    pseudonym_secret: bytes
    admin_token: str

    @classmethod
    def load(cls, keys_dir: Path, *, create: bool) -> "HubKeys":
        return cls(
            signing=keyfiles.ec_signing_key(keys_dir / "signing.jwk", create=create),
            pseudonym_secret=keyfiles.random_secret(keys_dir / "pseudonym.key", create=create),
            admin_token=keyfiles.random_token(keys_dir / "admin-token", create=create),
        )

    @property
    def kid(self) -> str:
        return str(self.signing.kid)

    def public_jwks(self) -> dict[str, Any]:
        public = self.signing.as_dict(private=False)
        return {"keys": [{**public, "kid": self.kid, "alg": "ES256", "use": "sig"}]}

    def verification_keys(self) -> KeySet:
        return KeySet([self.signing])

    def pseudonym(self, subject: str) -> str:
        """HMAC-SHA-256 of the subject under the hub's secret, hex: what logs keep instead."""
        return hmac.new(self.pseudonym_secret, subject.encode(), hashlib.sha256).hexdigest()

    def is_admin_token(self, presented: str) -> bool:
        return hmac.compare_digest(presented.encode(), self.admin_token.encode())


async def _keys(request: Request) -> HubKeys:
    keys: HubKeys = request.app.state.keys
    return keys


KeysDep = Annotated[HubKeys, Depends(_keys)]
