"""Verification of the hub's request tokens (docs/protocol.md §4)."""

from __future__ import annotations

import hashlib
import heapq
import json
import re
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256
from joserfc.errors import JoseError
from joserfc.jwk import Key
from joserfc.jws import JWSRegistry

from . import base64url
from ._errors import AuthenticationFailed
from ._hubkeys import HubDirectory

__all__ = [
    "SUBJECT_RULE",
    "RequestClaims",
    "RequestTokenVerifier",
    "subject_digest",
    "subject_problem",
]

REQUEST_TOKEN_TYPE = "onceonly-req+jwt"
_SKEW = 10
_MAX_LIFETIME = 120
# The largest time claim read: 2^53 seconds, past which a float is no longer exact
_LARGEST_TIME = 2**53
_ES256 = JWSRegistry.algorithms["ES256"]
_ES256_HALF = 32  # RFC 7518 §3.4: R and S, 32 octets each for P-256
_ECDSA_SHA256 = ec.ECDSA(SHA256())
# A hub signs with few keys, so its tokens carry few distinct headers: each is read once
_HEADERS_KEPT = 64
# The hub's request ids (its X-Request-Id rule, docs/protocol.md)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


SUBJECT_RULE = (
    "The identifier of whom the record is about: no white space at either end, no"
    " control character, no invisible format character (Unicode category Cf: zero-width"
    " space, byte order mark, bidirectional controls, soft hyphen), no other"
    " default-ignorable character (variation selectors, combining grapheme joiner,"
    " Hangul fillers), no unassigned, noncharacter or private-use code point, no space"
    " but U+0020 nor line or paragraph separator, no U+FFFD, no decimal"
    " digit other than ASCII 0-9 (full-width, Arabic-Indic, Devanagari), in Unicode"
    " normalization form C (NFC) and unchanged by compatibility normalization (NFKC:"
    " no full-width form, superscript or ligature); refused, not normalized"
)


def subject_problem(subject: str) -> str | None:
    """Why ``subject`` is not a subject identifier, or ``None`` when it is one
    (docs/protocol.md §3, decisions 0061 and 0072): no white space at either end, no
    control character (NUL included) nor lone surrogate, no format character (Unicode
    category Cf: U+200B zero-width space, U+FEFF byte order mark, U+200E/F and
    U+202A-E and U+2066-9 bidirectional controls, U+2060 word joiner, U+00AD soft
    hyphen) anywhere, nor any other default-ignorable code point (Unicode's
    Default_Ignorable_Code_Point: variation selectors U+FE00-F, the combining grapheme
    joiner U+034F, the Hangul fillers U+115F, U+1160, U+3164, U+FFA0, Mongolian free
    variation selectors), no unassigned code point, noncharacter (U+FFFF, U+FDD0-EF;
    category Cn) or private-use character (Co), no space but U+0020 (Zs: U+1680 Ogham
    space mark; the others NFKC changes) nor line or paragraph separator (Zl, Zp), no
    U+FFFD replacement character, no decimal digit (category Nd) but ASCII
    0-9, in Unicode normalization form C, and unchanged by NFKC (no full-width form,
    superscript, ligature or other compatibility character).

    A subject is refused, never normalized: a database that ignores trailing spaces
    (``CHAR(11)`` on PostgreSQL) or folds forms, or a source that converts (Python's
    ``int`` reads full-width and Arabic-Indic digits as ASCII ones), would read one
    person's record for two spellings, each filed under its own pseudonym. A format
    character is invisible: a pasted or exported identifier carries it unseen, and a
    right-to-left override shows one identifier as another. A default-ignorable one is
    invisible too, and a database that compares by collation (ICU's, MySQL's
    ``*_unicode_ci``) may ignore it: one person's record read under two spellings. A
    code point with no character assigned has no agreed meaning at all. The reason
    never quotes the subject.

    >>> subject_problem("38001085718 ")
    'the subject has white space at its start or end'
    """
    if subject != subject.strip():
        return "the subject has white space at its start or end"
    if subject.isascii():  # the usual case, on the record query's path: one C pass
        # ASCII has no format character nor other digit, and is in every normalization form
        return None if subject.isprintable() else _CONTROL
    if any(unicodedata.category(char) in _NOT_TEXT for char in subject):
        return _CONTROL
    if any(unicodedata.category(char) == "Cf" for char in subject):
        return "the subject holds an invisible format character (Unicode category Cf)"
    if _IGNORABLE.search(subject):
        return (
            "the subject holds a default-ignorable character (a variation selector, the"
            " combining grapheme joiner, a Hangul filler), which is not seen"
        )
    if any(unicodedata.category(char) in _NOT_ASSIGNED for char in subject):
        return "the subject holds an unassigned, noncharacter or private-use code point"
    if any(unicodedata.category(char) in _SEPARATORS and char != " " for char in subject):
        return "the subject holds a space other than U+0020, or a line or paragraph separator"
    if "\ufffd" in subject:
        return "the subject holds U+FFFD, which stands for bytes that were not text"
    if any(char.isdecimal() and not char.isascii() for char in subject):  # category Nd
        return "the subject holds a decimal digit other than ASCII 0-9"
    if not unicodedata.is_normalized("NFC", subject):
        return "the subject is not in Unicode normalization form C (NFC)"
    if not unicodedata.is_normalized("NFKC", subject):
        return (
            "the subject holds a compatibility character (a full-width form, superscript"
            " or ligature): it is not in Unicode normalization form KC (NFKC)"
        )
    return None


# Unicode general categories of code points that are no part of an identifier's text
_NOT_TEXT = frozenset({"Cc", "Cs"})
_CONTROL = "the subject holds a control character or a lone surrogate"
# Unassigned (noncharacters included) and private use: no agreed character at all
_NOT_ASSIGNED = frozenset({"Cn", "Co"})
# Spaces (but U+0020, which NFKC gives most others as) and line and paragraph separators
_SEPARATORS = frozenset({"Zs", "Zl", "Zp"})
# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt, Unicode 15.1; the
# property is not in Python's unicodedata). Those in category Cf are refused before.
_IGNORABLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


def subject_digest(subject: str) -> str:
    """base64url (no padding) of SHA-256 of the UTF-8 subject: the token's
    ``subject_sha256`` claim; the trail keeps it keyed (``_store.TrailKey``)."""
    digest = hashlib.sha256(subject.encode("utf-8")).digest()
    return base64url.encode(digest)


@dataclass(frozen=True)
class RequestClaims:
    """The verified claims of one request token."""

    consumer: str
    item: str
    purpose: str
    version: int
    subject_sha256: str
    # The hub's request id, as its audit entry of this request keeps it
    request_id: str
    jti: str
    # When the jti may be forgotten: no token with it holds any more (``exp`` + skew)
    forget_after: float
    # The pseudonym the hub's audit entry keeps for the subject (hubs before it: None)
    subject_pseudonym: str | None = None


class RequestTokenVerifier:
    """Checks a request token's signature, type, issuer, audience, lifetime and
    single use. Every refusal raises `AuthenticationFailed` (``invalid-token``).

    Seen ``jti`` values are kept in memory until their token expires: a replay to
    this process is refused here. What makes single use survive a restart, and hold
    across processes on one ``data_dir``, is the store's spent-token register
    (`RecordStore.spend_and_record`); `remember` loads what it holds at start-up.
    """

    def __init__(
        self,
        directory: HubDirectory,
        *,
        audience: str,
        token_type: str = REQUEST_TOKEN_TYPE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._directory = directory
        self._audience = audience
        self._token_type = token_type
        self._clock = clock
        self._seen: set[str] = set()
        self._expiry: list[tuple[float, str]] = []  # heap of (forget after, jti)
        self._public_keys: dict[str, tuple[Key, ec.EllipticCurvePublicKey]] = {}
        self._headers: dict[str, dict[str, Any]] = {}

    async def verify(self, token: str) -> RequestClaims:
        claims = await self.verify_claims(token)
        return _request_claims(claims, forget_after=_number(claims, "exp") + _SKEW)

    def remember(self, spent: Iterable[tuple[str, float]]) -> None:
        """Refuse each ``(jti, forget_after)`` in ``spent`` as already used (tokens spent
        before this process started, read from the store)."""
        for jti, forget_after in spent:
            if jti not in self._seen:
                self._seen.add(jti)
                heapq.heappush(self._expiry, (forget_after, jti))

    async def verify_claims(self, token: str) -> dict[str, Any]:
        """The claims of a hub-signed token of this verifier's type, once checked."""
        claims = await self._verified_claims(token)
        now = self._clock()
        expires = self._check_time(claims, now)
        self._check_identity(claims, await self._directory.issuer())
        self._use_once(claims.get("jti"), expires=expires, now=now)
        return claims

    async def _verified_claims(self, token: str) -> dict[str, Any]:
        """The payload of ``token`` once its ES256 signature (RFC 7515 §5.2, RFC 7518
        §3.4) holds under the hub key its ``kid`` names."""
        header_part, payload_part, signature_part = _segments(token)
        header = self._header(header_part)
        if header.get("alg") != "ES256" or header.get("typ") != self._token_type:
            raise AuthenticationFailed(f"the token must be ES256 {self._token_type}")
        if "crit" in header or "b64" in header:  # RFC 7515 §4.1.11, RFC 7797 §3, §6
            raise AuthenticationFailed("the request token names critical extensions")
        kid = header.get("kid")
        public_key = await self._public_key(kid) if isinstance(kid, str) else None
        if public_key is None:
            raise AuthenticationFailed("the request token's kid is not a hub key")
        signed = f"{header_part}.{payload_part}".encode("ascii")
        if not _es256_holds(public_key, signed, signature_part):
            raise AuthenticationFailed("the request token's signature is invalid")
        return _json_object(payload_part, "payload")

    def _header(self, part: str) -> dict[str, Any]:
        """The decoded protected header ``part``; the same text decodes to the same
        header, so the last few are kept (as read: callers do not change them)."""
        header = self._headers.get(part)
        if header is None:
            header = _json_object(part, "header")
            if len(self._headers) >= _HEADERS_KEPT:
                self._headers.clear()
            self._headers[part] = header
        return header

    async def _public_key(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        """The verifying key of the hub key ``kid``, checked as fit for ES256 once per key
        (the directory hands out new key objects when it refetches the JWKS)."""
        key = await self._directory.signing_key(kid)
        if key is None:
            return None
        cached = self._public_keys.get(kid)
        if cached is not None and cached[0] is key:
            return cached[1]
        try:
            _ES256.check_key(key)  # an EC key on P-256, for signatures, allowed ES256
            public_key = key.get_op_key("verify")
        except JoseError:
            return None
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            return None
        self._public_keys[kid] = (key, public_key)
        return public_key

    def _check_time(self, claims: dict[str, Any], now: float) -> float:
        """Return ``exp`` once ``iat`` and ``exp`` are acceptable at ``now`` (±10 s)."""
        issued, expires = _number(claims, "iat"), _number(claims, "exp")
        if issued > now + _SKEW:
            raise AuthenticationFailed("the request token is issued in the future")
        if expires <= now - _SKEW:
            raise AuthenticationFailed("the request token has expired")
        if not 0 < expires - issued <= _MAX_LIFETIME:
            raise AuthenticationFailed("the request token's lifetime is out of bounds")
        return expires

    def _check_identity(self, claims: dict[str, Any], issuer: str) -> None:
        if claims.get("iss") != issuer:
            raise AuthenticationFailed("the request token's issuer is not the hub")
        audience = claims.get("aud")
        if audience != self._audience and audience != [self._audience]:
            raise AuthenticationFailed("the request token is not addressed to this department")

    def _use_once(self, jti: object, *, expires: float, now: float) -> None:
        if not isinstance(jti, str) or not jti:
            raise AuthenticationFailed("the request token has no jti")
        while self._expiry and self._expiry[0][0] <= now:  # forget from the oldest end only
            _, old = heapq.heappop(self._expiry)
            self._seen.discard(old)
        if jti in self._seen:
            raise AuthenticationFailed("the request token was already used")
        self._seen.add(jti)
        heapq.heappush(self._expiry, (expires + _SKEW, jti))


def _segments(token: str) -> tuple[str, str, str]:
    """The three parts of a JWS compact serialization (RFC 7515 §7.1)."""
    parts = token.split(".")
    if len(parts) != 3 or not token.isascii():
        raise AuthenticationFailed("the request token is not a compact JWS")
    return parts[0], parts[1], parts[2]


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose members are each named once: json.loads keeps the last of
    two, another reader the first (RFC 8259 §4, RFC 7515 §4)."""
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("a member is named twice")
    return value


def _json_object(part: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(base64url.decode(part).decode("utf-8"), object_pairs_hook=_once_each)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise AuthenticationFailed(f"the request token's {name} is not JSON") from error
    if not isinstance(value, dict):
        raise AuthenticationFailed(f"the request token's {name} is not a JSON object")
    return value


def _es256_holds(key: ec.EllipticCurvePublicKey, signed: bytes, signature_part: str) -> bool:
    try:
        signature = base64url.decode(signature_part)
    except ValueError:
        return False
    if len(signature) != 2 * _ES256_HALF:
        return False
    r = int.from_bytes(signature[:_ES256_HALF], "big")
    s = int.from_bytes(signature[_ES256_HALF:], "big")
    try:
        key.verify(encode_dss_signature(r, s), signed, _ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True


def _request_claims(claims: dict[str, Any], *, forget_after: float) -> RequestClaims:
    strings = ("sub", "item", "purpose", "subject_sha256")
    version = claims.get("version")
    if not all(isinstance(claims.get(name), str) for name in strings) or not (
        isinstance(version, int) and not isinstance(version, bool)
    ):
        raise AuthenticationFailed("the request token lacks sub, item, purpose, version or hash")
    request_id, pseudonym = claims.get("request_id"), claims.get("subject_pseudonym")
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        raise AuthenticationFailed("the request token has no valid request_id")
    if pseudonym is not None and not isinstance(pseudonym, str):
        raise AuthenticationFailed("the request token's subject_pseudonym is not a string")
    return RequestClaims(
        consumer=claims["sub"],
        item=claims["item"],
        purpose=claims["purpose"],
        version=version,
        subject_sha256=claims["subject_sha256"],
        request_id=request_id,
        jti=claims["jti"],
        forget_after=forget_after,
        subject_pseudonym=pseudonym,
    )


def _number(claims: dict[str, Any], name: str) -> float:
    """The time claim ``name`` (RFC 7519 §2 NumericDate) as a float; one past what a
    float holds exactly (2^53 seconds: beyond any real date, and an integer of 400
    digits would overflow ``float``), or not finite (``1e400`` reads as infinity, and
    Python's JSON reads ``NaN``), is refused like any other malformed claim."""
    value = claims.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise AuthenticationFailed(f"the request token needs a numeric {name}")
    if not -_LARGEST_TIME <= value <= _LARGEST_TIME:  # False for NaN too
        raise AuthenticationFailed(f"the request token's {name} is out of bounds")
    return float(value)
