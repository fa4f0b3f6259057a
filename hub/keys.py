"""The hub's keys, under ``<data_dir>/keys`` (shared by every replica).

- ``signing/``: the EC P-256 keys that sign access tokens and adapter request tokens,
  with their rotation state (see ``onceonly.hub.signing_keys``); kid = RFC 7638 thumbprint.
- ``pseudonym.key``: the HMAC-SHA-256 secret that turns subject identifiers into
  pseudonyms for the audit log, and for nothing else.
- ``derivation.key``: the root of every other key the hub derives (HKDF-SHA-256, one
  :class:`KeyLabel` each), rotated with ``onceonly keys rotate-derivation``; the root
  it replaced stays in ``derivation.key.previous`` (see ``onceonly.hub.kit.derivation``).
- ``admin-token``: the bootstrap administrator's bearer secret (until people sign in).
- ``metrics-token``: the bearer secret a Prometheus scrape of ``/metrics`` sends
  (decision 0063); the only key that guards nothing stored, so a backup made before
  it existed is restored without it (:data:`REMADE_KEY_FILES`).

Derived keys never come from the pseudonym key: a pseudonym is published (in audit
entries) for any subject a department asks about, so a key computed like a pseudonym
would be published to whoever asks about its label (docs/decisions/0017). Versions
before that decision did compute keys so; the one whose values are still stored, the
TOTP seal key, is kept as :meth:`HubKeys.legacy_totp_seal_key`, to open them only.

Every key the hub uses comes from here: a module that needs one takes it from
:class:`HubKeys`, never derives one of its own.

In development missing keys are created (mode 0600); in production they must have
been provisioned with ``onceonly keys init``.
"""

import hmac
import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, KeySet

from onceonly.hub import signing_keys
from onceonly.hub.kit import derivation, keyfiles
from onceonly.hub.kit.clock import SYSTEM_CLOCK, Clock

DERIVATION_FILE = "derivation.key"
METRICS_TOKEN_FILE = "metrics-token"
# Versions before decision 0017 sealed TOTP secrets under the pseudonym of this label.
_LEGACY_TOTP_SEAL_LABEL = "onceonly totp-seal v1"


class KeyLabel(Enum):
    """Every key the hub derives from ``derivation.key``: the HKDF ``info`` of each."""

    DPOP_NONCE = b"onceonly/v1/dpop-nonce"
    TOTP_SEAL = b"onceonly/v1/totp-seal"
    OIDC_LOGIN = b"onceonly/v1/oidc-login"
    OIDC_CODE = b"onceonly/v1/oidc-code"
    SIGN_IN_FAILURES = b"onceonly/v1/sign-in-failures"
    CONSOLE_CSRF = b"onceonly/v1/console-csrf"
    CITIZEN_SESSION = b"onceonly/v1/citizen-session"
    CONSOLE_AUDIT_SEARCH = b"onceonly/v1/console-audit-search"


@dataclass(frozen=True)
class HubKeys:
    ring: signing_keys.SigningKeys
    pseudonym_secret: bytes
    admin_token: str
    derivation_root: derivation.RootFile
    metrics_token: str

    @classmethod
    def load(
        cls,
        keys_dir: Path,
        *,
        create: bool,
        reload_interval: float = 5.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> "HubKeys":
        """The keys under ``keys_dir``; ``clock`` is where they read time (which signing
        key is active, when to look at the files again)."""
        directory = keys_dir / "signing"
        signing_keys.ensure(directory, create=create, now=int(clock.time()))
        return cls(
            ring=signing_keys.SigningKeys(directory, reload_interval=reload_interval, clock=clock),
            pseudonym_secret=keyfiles.random_secret(keys_dir / "pseudonym.key", create=create),
            admin_token=keyfiles.random_token(keys_dir / "admin-token", create=create),
            derivation_root=derivation.RootFile(
                keys_dir / DERIVATION_FILE,
                create=create,
                reload_interval=reload_interval,
                clock=clock.monotonic,
            ),
            metrics_token=keyfiles.random_token(keys_dir / METRICS_TOKEN_FILE, create=create),
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
        return hmac.digest(self.pseudonym_secret, subject.encode(), "sha256").hex()

    def legacy_totp_seal_key(self) -> bytes:
        """The key that sealed TOTP secrets before decision 0017: the pseudonym of a label,
        so published by the audit log to whoever asked about it. To open those secrets,
        once, to re-seal them (``people.service.reseal_totp_secrets``); never to seal."""
        return bytes.fromhex(self.pseudonym(_LEGACY_TOTP_SEAL_LABEL))

    def root(self, root_id: str | None = None) -> derivation.Root:
        """The derivation root in use now or, for a value that names the root that sealed
        it, the current or previous root with ``root_id`` (else ``UnknownRoot``)."""
        if root_id is None:
            return self.derivation_root.current()
        return self.derivation_root.by_id(root_id)

    def derived(self, label: KeyLabel, *, root: derivation.Root | None = None) -> bytes:
        """The key for ``label``: HKDF-SHA-256 of the current root (or of ``root``),
        derived once per root. Every replica derives the same keys from the shared file."""
        return (root or self.root()).derive(label.value)

    def rotate_derivation(self) -> derivation.Root:
        """A new derivation root; the current one is kept as the previous (the new root)."""
        return self.derivation_root.rotate()

    def is_admin_token(self, presented: str) -> bool:
        return hmac.compare_digest(presented.encode(), self.admin_token.encode())

    def is_metrics_token(self, presented: str) -> bool:
        """Whether ``presented`` is ``keys/metrics-token`` (in constant time)."""
        return hmac.compare_digest(presented.encode(), self.metrics_token.encode())


FIXED_KEY_FILES = (
    "signing/state.json",
    "pseudonym.key",
    "derivation.key",
    "admin-token",
    METRICS_TOKEN_FILE,
    "checkpoint.jwk",
)
"""Under the key directory, what a production hub loads at start-up besides the signing
keys the state names (``onceonly keys init`` makes them all)."""

REMADE_KEY_FILES = frozenset({METRICS_TOKEN_FILE})
"""Key files that nothing stored depends on: a backup that lacks one (it was made
before the file existed) is restored all the same, and ``onceonly keys init`` (in
development, the hub's start) makes it anew."""


def key_file_names(directory: Path) -> list[str]:
    """Every key file the hub loads from ``directory``: the fixed ones and the signing
    keys that ``signing/state.json`` names (relative paths)."""
    names = list(FIXED_KEY_FILES)
    try:
        entries = json.loads((directory / "signing" / "state.json").read_text())["keys"]
        names += [f"signing/{entry['kid']}.jwk" for entry in entries]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # missing or unreadable: reported as such, or when the keys are loaded
    return names
