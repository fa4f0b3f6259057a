"""The hub's keys, under ``<data_dir>/keys`` (shared by every replica).

- ``signing/``: the EC P-256 keys that sign access tokens and adapter request tokens,
  with their rotation state (see ``hub.signing_keys``); kid = RFC 7638 thumbprint.
- ``pseudonym.key``: the HMAC-SHA-256 secret that turns subject identifiers into
  pseudonyms for the audit log (and, under a label of its own, the DPoP nonce key).
- ``admin-token``: the bootstrap administrator's bearer secret (until people sign in).

In development missing keys are created (mode 0600); in production they must have
been provisioned with ``onceonly keys init``.
"""

import hashlib
import hmac
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from joserfc.jwk import ECKey, KeySet

from hub import signing_keys
from hub.kit import keyfiles

_DPOP_NONCE_LABEL = b"onceonly dpop-nonce v1"


@dataclass(frozen=True)
class HubKeys:
    ring: signing_keys.SigningKeys
    pseudonym_secret: bytes
    admin_token: str

    @classmethod
    def load(cls, keys_dir: Path, *, create: bool, reload_interval: float = 5.0) -> "HubKeys":
        directory = keys_dir / "signing"
        signing_keys.ensure(directory, create=create, now=int(time.time()))
        return cls(
            ring=signing_keys.SigningKeys(directory, reload_interval=reload_interval),
            pseudonym_secret=keyfiles.random_secret(keys_dir / "pseudonym.key", create=create),
            admin_token=keyfiles.random_token(keys_dir / "admin-token", create=create),
        )

    @property
    def signing(self) -> ECKey:
        """The key that signs now (it changes when a rotation's delay has passed)."""
        return self.ring.signing()

    @property
    def kid(self) -> str:
        return str(self.signing.kid)

    def public_jwks(self) -> dict[str, Any]:
        return self.ring.public_jwks()

    def verification_keys(self, kid: str | None = None) -> KeySet:
        return self.ring.verification_keys(kid)

    def pseudonym(self, subject: str) -> str:
        """HMAC-SHA-256 of the subject under the hub's secret, hex: what logs keep instead."""
        return hmac.new(self.pseudonym_secret, subject.encode(), hashlib.sha256).hexdigest()

    @cached_property
    def dpop_nonce_secret(self) -> bytes:
        """A key of its own for stateless DPoP nonces, derived so that every replica
        holds it without one more file to provision (HMAC as a KDF, RFC 5869 §2.2 style)."""
        return hmac.new(self.pseudonym_secret, _DPOP_NONCE_LABEL, hashlib.sha256).digest()

    def is_admin_token(self, presented: str) -> bool:
        return hmac.compare_digest(presented.encode(), self.admin_token.encode())


async def _keys(request: Request) -> HubKeys:
    keys: HubKeys = request.app.state.keys
    return keys


KeysDep = Annotated[HubKeys, Depends(_keys)]
