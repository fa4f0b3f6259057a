"""The adapter's keys on disk: the client's signing key, a private JWK, and the
trail key (`load_or_create_secret`), 32 random bytes as hex."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key

from ._errors import ConfigError

__all__ = [
    "SigningKey",
    "algorithm_of",
    "load_or_create_key",
    "load_or_create_secret",
    "public_jwks",
]

SigningKey = ECKey | OKPKey | RSAKey


def load_or_create_key(path: str | Path) -> ECKey:
    """Load the private EC P-256 JWK at ``path``, or create one there.

    A new key is written atomically with mode 0600 (parent directories are
    created); its ``kid`` is its RFC 7638 thumbprint.

    :raises ConfigError: the file exists but does not hold a private P-256 key.
    """
    path = Path(path)
    if path.exists():
        return _load(path)
    key = ECKey.generate_key("P-256", auto_kid=True)
    _write_private(path, json.dumps(key.as_dict(private=True)))
    return key


def load_or_create_secret(path: str | Path) -> tuple[bytes, bool]:
    """The 32-byte secret at ``path`` (64 hex digits), or a new random one written there
    0600, never over a file that exists (two processes creating it at once keep the first
    one's); ``True`` when it was created here.

    :raises ConfigError: the file exists but does not hold 64 hex digits.
    """
    path = Path(path)
    try:
        return _read_secret(path), False
    except FileNotFoundError:
        pass
    secret = secrets.token_bytes(32)
    try:
        _write_private(path, secret.hex() + "\n", replace=False)
    except FileExistsError:
        return _read_secret(path), False
    return secret, True


def _read_secret(path: Path) -> bytes:
    text = path.read_text(encoding="ascii", errors="replace").strip()
    if len(text) != 64:
        raise ConfigError(f"{path}: expected 64 hex digits (a 32-byte secret)")
    try:
        return bytes.fromhex(text)
    except ValueError as error:
        raise ConfigError(f"{path}: expected 64 hex digits (a 32-byte secret)") from error


def public_jwks(*keys: SigningKey) -> dict[str, Any]:
    """The JWKS to register at the hub for a client that signs with ``keys`` (two of
    them while it rotates from one to the other)."""
    return {"keys": [_public_jwk(key) for key in keys]}


def algorithm_of(key: SigningKey) -> str:
    """The JWS algorithm the hub accepts for ``key``: ES256, Ed25519 or PS256."""
    if isinstance(key, ECKey):
        if key.curve_name != "P-256":
            raise ConfigError("EC client keys must be on the P-256 curve")
        return "ES256"
    return "Ed25519" if isinstance(key, OKPKey) else "PS256"  # RFC 9864 §2.2


def _public_jwk(key: SigningKey) -> dict[str, Any]:
    public = dict(key.as_dict(private=False))
    public.update(kid=key.kid or key.thumbprint(), alg=algorithm_of(key), use="sig")
    return public


def _load(path: Path) -> ECKey:
    try:
        key = import_key(json.loads(path.read_text(encoding="utf-8")), "EC")
    except (OSError, ValueError, JoseError) as error:
        raise ConfigError(f"{path}: not a private EC JWK: {error}") from error
    if not key.is_private or key.curve_name != "P-256":
        raise ConfigError(f"{path}: expected a private P-256 key")
    key.ensure_kid()
    return key


def private_directory(directory: Path) -> None:
    """Make ``directory`` (and any missing parents) if missing, itself 0700 whatever the
    umask: the data directory holds the keys, the records and the served-log. One
    that exists is left as it is (the operator's)."""
    try:
        directory.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        return
    os.chmod(directory, 0o700)


def _write_private(path: Path, text: str, *, replace: bool = True) -> None:
    """Write ``text`` to ``path`` mode 0600, whole or not at all; without ``replace``,
    FileExistsError when ``path`` exists (a link, which never replaces)."""
    private_directory(path.parent)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".key-")
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
