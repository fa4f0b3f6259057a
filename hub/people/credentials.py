"""Passwords (argon2id), TOTP one-time codes (RFC 6238) and sealed TOTP secrets. Pure.

Password hashes use argon2-cffi's RFC 9106 "low memory" profile (argon2id, t=3,
m=64 MiB, p=4): the second recommended option of RFC 9106 §4, within what a hub
replica can afford for sign-ins. Time and memory cost are settings, so that tests
can lower them; production mode refuses less than this profile.

TOTP secrets must be readable to check a code, so they are stored sealed
(``onceonly.hub.kit.sealing``, AES-256-GCM) under a key derived from the hub's
derivation root, as ``v2.<root id>.<sealed>``: the root id says which root sealed it,
so that a value sealed before a rotation opens until it is re-sealed.

Values sealed before decision 0017 have no prefix and keep base64url's padding, under
a key that the audit log published (``HubKeys.legacy_totp_seal_key``):
:func:`unseal_legacy` stays only so that the hub can open them once, to re-seal them.
"""

import base64
import dataclasses
import hmac
import secrets
import struct
from enum import StrEnum
from urllib.parse import quote

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import RFC_9106_LOW_MEMORY

from onceonly.hub.kit import sealing

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
_HASHER = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)
# Verified when the account does not exist, so that the answer takes as long. Made by
# configure_password_hashing (the hub's start-up), not at import: every process that
# imports the hub (each command of the CLI) would pay one hash at production cost.
_DUMMY_HASH: str | None = None


def configure_password_hashing(*, time_cost: int, memory_kib: int) -> None:
    """Hash new passwords with this argon2id cost (Settings ``password_time_cost`` and
    ``password_memory_kib``; production refuses less than RFC 9106's low-memory
    profile). Process-wide, as the hub's start-up sets it; hashes made at another cost
    still verify, since each hash carries its parameters."""
    global _HASHER, _DUMMY_HASH
    parameters = dataclasses.replace(
        RFC_9106_LOW_MEMORY, time_cost=time_cost, memory_cost=memory_kib
    )
    if (parameters.time_cost, parameters.memory_cost) != (_HASHER.time_cost, _HASHER.memory_cost):
        _HASHER = PasswordHasher.from_parameters(parameters)
        _DUMMY_HASH = None
    _dummy_hash()


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))
    return _DUMMY_HASH


TOTP_PERIOD = 30
TOTP_DIGITS = 6
_SEALED_VERSION = "v2"


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches; with no stored hash, spend the same time and say no."""
    try:
        return _HASHER.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class PasswordProblem(StrEnum):
    """The rule a new password breaks, as the API says it; a form names it in its own
    words by the member (console/admin_views.py)."""

    TOO_SHORT = f"a password needs at least {MIN_PASSWORD_LENGTH} characters"
    TOO_LONG = f"a password may have at most {MAX_PASSWORD_LENGTH} characters"
    CONTAINS_USERNAME = "a password must not contain the username"
    TOO_FEW_CHARACTERS = "a password must not repeat the same few characters"


def password_problem(password: str, *, username: str) -> PasswordProblem | None:
    """The first rule a new password breaks (NIST SP 800-63B §5.1.1.2), or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return PasswordProblem.TOO_SHORT
    if len(password) > MAX_PASSWORD_LENGTH:
        return PasswordProblem.TOO_LONG
    if username.lower() in password.lower():
        return PasswordProblem.CONTAINS_USERNAME
    if len(set(password)) < 4:
        return PasswordProblem.TOO_FEW_CHARACTERS
    return None


def new_totp_secret() -> str:
    """A random 160-bit secret, base32 without padding (RFC 4226 §4 recommends 160 bits)."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def _secret_bytes(secret: str) -> bytes:
    return base64.b32decode(secret + "=" * (-len(secret) % 8), casefold=True)


def hotp(secret: bytes, counter: int, *, digits: int = TOTP_DIGITS, digest: str = "sha1") -> str:
    """RFC 4226 §5.3: HOTP value of ``counter``."""
    mac = hmac.new(secret, struct.pack(">Q", counter), digest).digest()
    offset = mac[-1] & 0x0F
    code = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(code % 10**digits).zfill(digits)


def totp_step(unix_time: float) -> int:
    return int(unix_time // TOTP_PERIOD)


def totp_match(secret: str, code: str, *, unix_time: float, after_step: int | None) -> int | None:
    """The time step that ``code`` is valid for (now, or one step either side for clock
    drift, RFC 6238 §5.2), if that step is later than ``after_step``: a code is used once."""
    if not (code.isdigit() and len(code) == TOTP_DIGITS):
        return None
    key = _secret_bytes(secret)
    now = totp_step(unix_time)
    for step in (now - 1, now, now + 1):
        if step < 0 or (after_step is not None and step <= after_step):
            continue  # RFC 4226 counters are unsigned; a spent step counts no more
        if hmac.compare_digest(hotp(key, step), code):
            return step
    return None


def totp_uri(secret: str, *, username: str, issuer: str) -> str:
    """The ``otpauth://`` URI authenticator apps read (as a QR code)."""
    label = quote(f"{issuer}:{username}")
    return (
        f"otpauth://totp/{label}?secret={secret}&issuer={quote(issuer)}"
        f"&algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_PERIOD}"
    )


def sealed_prefix(root_id: str) -> str:
    """How every value sealed under the root ``root_id`` begins."""
    return f"{_SEALED_VERSION}.{root_id}."


def sealed_root(sealed: str) -> str | None:
    """The id of the root that sealed ``sealed``; None if it is a legacy value."""
    version, _, rest = sealed.partition(".")
    root_id, dot, _ = rest.partition(".")
    return root_id if version == _SEALED_VERSION and dot else None


def seal(key: bytes, secret: str, *, root_id: str, person_id: str) -> str:
    """Sealed under ``key`` (derived from the root ``root_id``), the person's id as
    associated data (a sealed secret moved to another account does not open)."""
    return sealed_prefix(root_id) + sealing.seal(key, secret.encode(), aad=person_id.encode())


def unseal(key: bytes, sealed: str, *, person_id: str) -> str:
    """The secret in ``v2.<root id>.<sealed>``, given the key of the root that sealed it.
    ``InvalidTag`` for the wrong key or person, ``ValueError`` for a malformed value."""
    return _opened(key, sealed.rpartition(".")[2], person_id=person_id)


def unseal_legacy(key: bytes, sealed: str, *, person_id: str) -> str:
    """The secret in a value sealed before decision 0017 (no prefix, padded base64url:
    the same bytes as the unpadded text without its "="), under the legacy key
    (``HubKeys.legacy_totp_seal_key``). To re-seal it, never to seal."""
    return _opened(key, sealed.rstrip("="), person_id=person_id)


def _opened(key: bytes, body: str, *, person_id: str) -> str:
    return sealing.unseal(key, body, aad=person_id.encode()).decode()
