"""DPoP proofs (RFC 9449): checked here without I/O; replay is the caller's job.

The checks follow RFC 9449 §4.3 in order: one well-formed JWT (step 2), ``typ``
``dpop+jwt`` (4), an asymmetric algorithm we support (5), a public ``jwk`` (7) whose
signature verifies (6), ``htm`` (8), ``htu`` without query and fragment (9), ``iat``
within the window (11), and ``ath`` when an access token is presented (12). The
``nonce`` (10) and ``jti`` (§11.1) are returned for the caller to judge.

The keys of proofs are kept, so that a client's key is imported once per process and
not on each of its requests; only keys that an access token is bound to are kept, each
under that token's client, as the caller verified the token (:class:`PresentedToken`,
decision 0050), and each key once, whatever other members its ``jwk`` has.
"""

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws
from joserfc.errors import (
    InvalidHeaderValueError,
    JoseError,
    MissingCritHeaderError,
    UnsupportedHeaderError,
    UnsupportedKeyAlgorithmError,
    UnsupportedKeyOperationError,
    UnsupportedKeyUseError,
)
from joserfc.jwk import ECKey, OKPKey, RSAKey

from onceonly.hub.kit import base64url, es256
from onceonly.hub.kit.fair_lru import FairLru
from onceonly.hub.kit.jws import MAX_JWT_BYTES, peek_header_and_claims, safe_reason
from onceonly.hub.registry.jwks import check_public_key

PROOF_TYPE = "dpop+jwt"
ALGORITHMS = ("ES256", "Ed25519", "EdDSA", "PS256")
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_KEY_KINDS: dict[str, tuple[str, str | None]] = {
    "ES256": ("EC", "P-256"),
    "Ed25519": ("OKP", "Ed25519"),
    "EdDSA": ("OKP", "Ed25519"),
    "PS256": ("RSA", None),
}
_DEFAULT_PORTS = {"http": 80, "https": 443}
# A proof's header carries the public key: an RSA 2048 JWK needs more than joserfc's
# default 512 bytes of header.
_REGISTRY = jws.JWSRegistry(algorithms=list(ALGORITHMS))
_REGISTRY.max_header_length = 2048
_ES256 = _REGISTRY.get_alg("ES256")
_SORTED_JSON = json.JSONEncoder(sort_keys=True).encode  # json.dumps(..., sort_keys=True)
# RFC 7638 §3.2: the members a key's thumbprint is made of, which name the key
_KEY_MEMBERS = {"EC": ("crv", "x", "y"), "OKP": ("crv", "x"), "RSA": ("e", "n")}
ProofKey = ECKey | OKPKey | RSAKey
_KeyId = tuple[str, ...]  # a key's kty and the values of its _KEY_MEMBERS


@dataclass(frozen=True, slots=True)
class _KeptKey:
    """A proof's key as imported from ``jwk`` (its text), and its RFC 7638 thumbprint."""

    jwk: str
    key: ProofKey
    jkt: str


# The imported keys of proofs (decision 0050), one entry for each key (_KeyId): the same
# key written with another kid, or any other member, replaces its entry and takes no
# other. The bound of 1,024 over all as before, and 64 of one client's, as for its
# tokens (0046). One event loop uses it, as callers' verified tokens.
_KEPT_KEYS: FairLru[_KeyId, _KeptKey] = FairLru(max_entries=1024, max_per_owner=64)


class ProofError(ValueError):
    """Why a proof is refused; the caller turns it into the error of its endpoint."""


@dataclass(frozen=True)
class PresentedToken:
    """The access token a proof comes with, as its caller verified it: its text, whose
    hash the proof's ``ath`` must be, and its verified claims' ``client_id`` and
    ``cnf.jkt`` (None if it is not DPoP-bound). A proof's key is kept for that client
    only if it is that ``jkt`` (decision 0050). Only a caller that verified the token
    makes one (``callers``); the token endpoint's proofs come with none."""

    text: str
    client_id: str
    jkt: str | None


@dataclass(frozen=True)
class Proof:
    """What a valid proof establishes: the key's RFC 7638 thumbprint, and what the
    caller must still check (``jti`` single use, ``nonce``)."""

    jkt: str
    jti: str
    iat: int  # rounded up: a NumericDate may have a fraction (RFC 7519 §2)
    nonce: str | None


def b64url_sha256(text: str) -> str:
    """base64url (no padding) of SHA-256 of the ASCII text: ``ath`` (RFC 9449 §4.2)."""
    digest = hashlib.sha256(text.encode("ascii")).digest()
    return base64url.encode(digest)


def normalize_url(url: str) -> str:
    """Scheme, host, port (default dropped) and path, as RFC 9449 §4.3 step 9 compares
    them after RFC 3986 §6.2.2 and §6.2.3 normalization: case, percent-encoding (an
    unreserved character decoded, the others' hex digits in upper case), dot segments
    removed, an empty path as "/"; query and fragment ignored. A URL with user
    information names no HTTP request's target (RFC 9110 §4.2.4): refused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ProofError("htu is not a URL") from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if not scheme or not host:
        raise ProofError("htu must be an absolute URL")
    if "@" in parts.netloc:
        raise ProofError("htu must not carry user information (RFC 9110 §4.2.4)")
    authority = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    path = parts.path
    if "%" in path or "/." in path:  # else already normal (the usual case: two C passes)
        path = _remove_dot_segments(_PERCENT.sub(_normal_percent, path))
    return f"{scheme}://{authority}{path or '/'}"


_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _normal_percent(found: re.Match[str]) -> str:
    """RFC 3986 §6.2.2.1-2: an unreserved character decoded, any other upper case."""
    char = chr(int(found.group(1), 16))
    return char if char in _UNRESERVED else "%" + found.group(1).upper()


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, step by step."""
    out: list[str] = []
    while path:
        if path.startswith("../"):
            path = path[3:]
        elif path.startswith("./"):
            path = path[2:]
        elif path.startswith("/./"):
            path = path[2:]
        elif path == "/.":
            path = "/"
        elif path.startswith("/../") or path == "/..":
            path = "/" + path[4:]
            if out:
                out.pop()
        elif path in (".", ".."):
            path = ""
        else:
            end = path.find("/", 1)
            segment, path = (path, "") if end < 0 else (path[:end], path[end:])
            out.append(segment)
    return "".join(out)


def verify_proof(
    proof: str,
    *,
    method: str,
    url: str,
    now: int,
    max_age: int,
    skew: int,
    access_token: PresentedToken | None = None,
) -> Proof:
    """Check one DPoP proof for a request of ``method`` to ``url``; raise ProofError.

    ``access_token``: the token the proof comes with, as the caller verified it; if it
    is bound to the proof's key, the key is kept for its client once the proof holds
    (decision 0050). The token's text is only hashed (``ath``), never read."""
    header, claims = _peek(proof)
    jwk, key_id = _proof_jwk(header)
    kept = _KEPT_KEYS.get(key_id)
    if kept is not None and kept.jwk != jwk:
        kept = None  # its other members (use, alg, key_ops) are checked as written
    key = kept.key if kept is not None else _import_public(jwk)
    _check_signature(proof, header, key)
    _check_claims(claims, method=method, url=url, now=now, max_age=max_age, skew=skew)
    _check_ath(claims, access_token)
    if kept is None:
        kept = _KeptKey(jwk, key, _thumbprint(key))
        if access_token is not None and access_token.jkt == kept.jkt:
            _keep(key_id, kept, owner=access_token.client_id)
    nonce = claims.get("nonce")
    return Proof(
        jkt=kept.jkt,
        jti=claims["jti"],
        iat=math.ceil(claims["iat"]),
        nonce=nonce if isinstance(nonce, str) else None,
    )


def _peek(proof: str) -> tuple[dict[str, Any], dict[str, Any]]:
    if len(proof) > MAX_JWT_BYTES:
        raise ProofError(f"the DPoP proof is longer than {MAX_JWT_BYTES} bytes")
    try:
        header, claims = peek_header_and_claims(proof, registry=_REGISTRY)
    except (ValueError, TypeError, UnicodeError) as error:  # peek's reasons quote no text
        raise ProofError(f"the DPoP proof cannot be read: {safe_reason(error)}") from None
    if str(header.get("typ", "")).lower() != PROOF_TYPE:
        raise ProofError(f"the DPoP proof's typ must be {PROOF_TYPE}")
    if header.get("alg") not in ALGORITHMS:
        raise ProofError(f"the DPoP proof's alg must be one of {', '.join(ALGORITHMS)}")
    return header, claims


def _check_signature(proof: str, header: dict[str, Any], key: ProofKey) -> None:
    """The proof's signature by ``key``, or ProofError with the reason. ES256, the common
    case, is checked straight through ``cryptography`` after the header checks joserfc
    would make (RFC 7515 §4.1.11 ``crit`` among them); a header with ``crit`` or ``b64``
    (RFC 7797), and every other algorithm, goes through joserfc whole."""
    try:
        if header["alg"] == "ES256" and "crit" not in header and "b64" not in header:
            _REGISTRY.check_header(header)
            holds = es256.holds(_ec_verifier(key), proof)
        else:
            jws.deserialize_compact(proof, key, registry=_REGISTRY)
            holds = True
    except (JoseError, ValueError, TypeError) as error:
        raise ProofError(_why_not(error, header)) from None
    if not holds:
        raise ProofError(_BAD_SIGNATURE)


_BAD_SIGNATURE = "the DPoP proof's signature does not verify with its jwk"
_REFUSED = "the hub does not verify a DPoP proof"
# Why joserfc would not check a signature, in words (its codes are its own)
_KEY_REFUSALS: dict[type[JoseError], str] = {
    UnsupportedKeyOperationError: "whose key_ops do not include verify (RFC 7517 §4.3)",
    UnsupportedKeyUseError: 'whose use is not "sig" (RFC 7517 §4.2)',
    UnsupportedKeyAlgorithmError: "whose alg is not the proof's alg (RFC 7517 §4.4)",
}


def _why_not(error: Exception, header: dict[str, Any]) -> str:
    """The reason a proof's signature was not checked, or did not verify."""
    for kind, reason in _KEY_REFUSALS.items():
        if isinstance(error, kind):
            return f"{_REFUSED} with a jwk {reason}"
    if isinstance(error, MissingCritHeaderError):
        return f"{_REFUSED} whose crit names a parameter its header lacks (RFC 7515 §4.1.11)"
    if isinstance(error, UnsupportedHeaderError) and "crit" in header:
        return f"{_REFUSED} whose crit names an extension it does not understand (RFC 7515 §4.1.11)"
    if isinstance(error, UnsupportedHeaderError):
        return f"{_REFUSED} whose header holds a parameter it does not support"
    if isinstance(error, InvalidHeaderValueError):
        return f"{_REFUSED} whose header holds a parameter with a value it may not have"
    return _BAD_SIGNATURE


def _ec_verifier(key: ProofKey) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of an ES256 proof's jwk, once joserfc's own checks of the key
    for ES256 hold (its ``use``, ``alg`` and ``key_ops`` among them): JoseError if not,
    ValueError if it is no P-256 key."""
    if not isinstance(key, ECKey):
        raise ValueError("an ES256 proof needs an EC key")
    _ES256.check_key(key)
    public = key.get_op_key("verify")
    if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(
        public.curve, ec.SECP256R1
    ):
        raise ValueError("an ES256 proof needs a P-256 key")
    return public


def _proof_jwk(header: dict[str, Any]) -> tuple[str, _KeyId]:
    """The text of the proof's public ``jwk`` (members sorted), of the kind its alg needs,
    and the key it names (``_KeyId``, what its thumbprint is made of).

    The key is read on its members before it is imported or any signature is checked
    (``registry.jwks.check_public_key``, as for registered keys): an RSA key is one the
    hub verifies with (``e`` is 65537, ``n`` has 2048 to 4096 bits: a large ``e`` made
    each check of a proof that anyone can send cost milliseconds, decision 0009), and
    each member is in its one spelling (RFC 7518 §6.2.1.2, §6.3.1.1; RFC 8037 §2), so
    that a key has one thumbprint and one kept entry, and a token bound to it is bound
    whichever proof the client sends."""
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise ProofError("the DPoP proof has no jwk header")
    if _PRIVATE_MEMBERS & jwk.keys():
        raise ProofError("the DPoP proof's jwk must be a public key")
    kty, crv = _KEY_KINDS[header["alg"]]
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        raise ProofError(f"alg {header['alg']} needs a {kty} {crv or ''} key".replace("  ", " "))
    key_id = _key_id(kty, jwk)
    try:
        check_public_key(jwk)
    except ValueError as error:
        raise ProofError(f"the DPoP proof's jwk is not a valid public key: {error}") from None
    return _SORTED_JSON(jwk), key_id


def _key_id(kty: str, jwk: dict[str, Any]) -> _KeyId:
    """The key a ``jwk`` names; its thumbprint members are strings, or no import holds."""
    values = [jwk.get(member) for member in _KEY_MEMBERS[kty]]
    if not all(isinstance(value, str) for value in values):
        raise ProofError("the DPoP proof's jwk is not a valid public key")
    return (kty, *map(str, values))


def _import_public(canonical: str) -> ProofKey:
    """The key a proof's jwk text (from :func:`_proof_jwk`) describes."""
    try:
        return _import_key(json.loads(canonical))
    except (JoseError, ValueError, TypeError, KeyError):
        raise ProofError("the DPoP proof's jwk is not a valid public key") from None


def _import_key(jwk: dict[str, Any]) -> ProofKey:
    if jwk["kty"] == "EC":
        return ECKey.import_key(jwk)
    if jwk["kty"] == "OKP":
        return OKPKey.import_key(jwk)
    return RSAKey.import_key(jwk)  # checked by _proof_jwk


def _thumbprint(key: ProofKey) -> str:
    """RFC 7638, once the proof holds: a proof that does not costs no thumbprint."""
    try:
        return key.thumbprint()
    except (JoseError, ValueError, TypeError, KeyError):
        raise ProofError("the DPoP proof's jwk is not a valid public key") from None


def _keep(key_id: _KeyId, kept: _KeptKey, *, owner: str) -> None:
    """Keep the key of a proof that holds and came with a verified access token bound
    to it, as one of the keys of the token's client (``owner``). Anyone can sign a
    proof with a new key; only the hub issues a token bound to one, to an
    authenticated client. So a proof alone never pushes out a kept key, and a client
    pushes out at most its share of others' (decision 0050). One entry per key: the key
    written otherwise (another kid) replaces it, so each of a client's entries needs a
    token bound to another key."""
    _KEPT_KEYS.put(key_id, kept, owner=owner)


def _check_claims(
    claims: dict[str, Any], *, method: str, url: str, now: int, max_age: int, skew: int
) -> None:
    jti, iat = claims.get("jti"), claims.get("iat")
    if not isinstance(jti, str) or not 1 <= len(jti) <= 256:
        raise ProofError("the DPoP proof needs a jti of 1 to 256 characters")
    # a NumericDate, which may have a fraction (RFC 7519 §2, RFC 9449 §4.2): time.time()
    if not isinstance(iat, int | float) or isinstance(iat, bool) or not math.isfinite(iat):
        raise ProofError("the DPoP proof needs a numeric iat")
    if claims.get("htm") != method:
        raise ProofError(f"the DPoP proof is for another method than {method}")
    htu = claims.get("htu")
    if not isinstance(htu, str) or normalize_url(htu) != normalize_url(url):
        raise ProofError("the DPoP proof is for another URL (htu)")
    if iat > now + skew:
        raise ProofError("the DPoP proof was issued in the future")
    if iat < now - max_age - skew:
        raise ProofError("the DPoP proof is too old")


def _check_ath(claims: dict[str, Any], access_token: PresentedToken | None) -> None:
    """RFC 9449 §4.3 step 12: with an access token, ``ath`` must be its hash."""
    if access_token is None:
        return
    if claims.get("ath") != b64url_sha256(access_token.text):
        raise ProofError("the DPoP proof's ath does not match the access token")
