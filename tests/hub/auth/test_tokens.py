"""Client assertions (RFC 7523 §3) and access tokens (RFC 9068 §4) as tables of pure
calls to ``auth.tokens``; the token endpoint over the wire is test_auth_tokens.py."""

from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey

from onceonly.hub.auth.exceptions import ClientSignatureInvalid, InvalidClient, InvalidToken
from onceonly.hub.auth.tokens import (
    MAX_ASSERTION_LIFETIME,
    issue_access_token,
    verify_access_token,
    verify_client_assertion,
)

NOW, SKEW = 1_800_000_000, 5
ISSUER = "https://hub.example.gov"
CLIENT = "social-welfare-adapter"
CLIENT_KEY = ECKey.generate_key("P-256", auto_kid=True)
CLIENT_KEYS = KeySet([CLIENT_KEY])
HUB_KEY = ECKey.generate_key("P-256", auto_kid=True)
HUB_KEYS = KeySet([HUB_KEY])
SCOPES = frozenset({"read:person.identity", "read:person.residential-address"})


def assertion(key: ECKey = CLIENT_KEY, alg: str = "ES256", **changes: Any) -> str:
    claims = {"iss": CLIENT, "sub": CLIENT, "aud": ISSUER, "exp": NOW + 60, "jti": "a-1"}
    claims = {name: value for name, value in {**claims, **changes}.items() if value is not None}
    return jwt.encode({"alg": alg, "kid": key.kid}, claims, key, algorithms=[alg])


def check_assertion(token: str) -> Any:
    return verify_client_assertion(
        token, client_id=CLIENT, client_keys=CLIENT_KEYS, issuer=ISSUER, now=NOW, skew=SKEW
    )


def test_a_valid_assertion_names_its_client_jti_and_expiry() -> None:
    claims = check_assertion(assertion())
    assert (claims.client_id, claims.jti, claims.expires_at) == (CLIENT, "a-1", NOW + 60)


@pytest.mark.parametrize(
    "changes",
    [{"aud": [ISSUER]}, {"iat": NOW + SKEW, "nbf": NOW}, {"exp": NOW + MAX_ASSERTION_LIFETIME}],
    ids=["aud-list", "iat-and-nbf-within-skew", "longest-lifetime"],
)
def test_assertions_within_the_rules_are_accepted(changes: dict[str, Any]) -> None:
    assert check_assertion(assertion(**changes)).client_id == CLIENT


ASSERTION_ATTACKS: list[tuple[str, Any, type[Exception], str]] = [
    (
        "signed by another key",
        lambda: assertion(ECKey.generate_key("P-256", auto_kid=True)),
        ClientSignatureInvalid,
        "does not verify",
    ),
    (
        "HS256 with the public key",
        lambda: jwt.encode(
            {"alg": "HS256", "kid": CLIENT_KEY.kid},
            {"iss": CLIENT, "sub": CLIENT, "aud": ISSUER, "exp": NOW + 60, "jti": "a-1"},
            OctKey.import_key(CLIENT_KEY.thumbprint()),
            algorithms=["HS256"],
        ),
        ClientSignatureInvalid,
        "does not verify",
    ),
    (
        "iss another client",
        lambda: assertion(iss="tax-office-adapter"),
        InvalidClient,
        "iss and sub",
    ),
    ("sub missing", lambda: assertion(sub=None), InvalidClient, "iss and sub"),
    (
        "aud another issuer",
        lambda: assertion(aud="https://evil.example"),
        InvalidClient,
        "aud must",
    ),
    (
        "aud with a second audience",
        lambda: assertion(aud=[ISSUER, "https://evil.example"]),
        InvalidClient,
        "aud must",
    ),
    ("exp missing", lambda: assertion(exp=None), InvalidClient, "exp"),
    ("exp a string", lambda: assertion(exp=str(NOW + 60)), InvalidClient, "exp"),
    ("expired", lambda: assertion(exp=NOW - SKEW), InvalidClient, "expired"),
    (
        "lives too long",
        lambda: assertion(exp=NOW + MAX_ASSERTION_LIFETIME + SKEW + 1),
        InvalidClient,
        "longer than",
    ),
    ("nbf in the future", lambda: assertion(nbf=NOW + SKEW + 1), InvalidClient, "not valid yet"),
    (
        "iat in the future",
        lambda: assertion(iat=NOW + SKEW + 1),
        InvalidClient,
        "issued in the future",
    ),
    ("iat a boolean", lambda: assertion(iat=True), InvalidClient, "NumericDate"),
    ("jti missing", lambda: assertion(jti=None), InvalidClient, "jti"),
    ("jti too long", lambda: assertion(jti="j" * 257), InvalidClient, "jti must be"),
]


@pytest.mark.parametrize(
    ("make", "refusal", "reason"),
    [attack[1:] for attack in ASSERTION_ATTACKS],
    ids=[attack[0] for attack in ASSERTION_ATTACKS],
)
def test_a_bad_client_assertion_is_refused(
    make: Any, refusal: type[Exception], reason: str
) -> None:
    with pytest.raises(refusal, match=reason):
        check_assertion(make())


def issued(*, key: ECKey = HUB_KEY, now: int = NOW, **cnf: str) -> str:
    return issue_access_token(
        key=key,
        issuer=ISSUER,
        client_id=CLIENT,
        department="social-welfare",
        scopes=SCOPES,
        now=now,
        lifetime=300,
        confirmation=cnf or None,
    )


def check_token(token: str, *, now: int = NOW) -> Any:
    return verify_access_token(token, keys=HUB_KEYS, issuer=ISSUER, now=now, skew=SKEW)


def test_an_issued_token_verifies_with_its_claims_and_binding() -> None:
    claims = check_token(issued(jkt="thumbprint"))
    assert (claims.client_id, claims.department, claims.scopes) == (
        CLIENT,
        "social-welfare",
        SCOPES,
    )
    assert (claims.issued_at, claims.expires_at, claims.jkt, claims.x5t) == (
        NOW,
        NOW + 300,
        "thumbprint",
        None,
    )


def test_each_issued_token_has_its_own_jti() -> None:
    assert check_token(issued()).jti != check_token(issued()).jti


def _hub_signed(header: dict[str, Any], **changes: Any) -> str:
    claims = {
        "iss": ISSUER,
        "aud": ISSUER,
        "client_id": CLIENT,
        "department": "d",
        "jti": "t",
        "iat": NOW,
        "exp": NOW + 60,
    }
    claims = {name: value for name, value in {**claims, **changes}.items() if value is not None}
    return jwt.encode(
        {"alg": "ES256", "kid": HUB_KEY.kid, **header}, claims, HUB_KEY, algorithms=["ES256"]
    )


TOKEN_ATTACKS: list[tuple[str, Any, int, str]] = [
    (
        "signed by another key",
        lambda: issued(key=ECKey.generate_key("P-256", auto_kid=True)),
        NOW,
        "not valid",
    ),
    ("a client assertion as a token", lambda: assertion(), NOW, "typ must be at\\+jwt"),
    ("typ JWT", lambda: _hub_signed({"typ": "JWT"}), NOW, "typ must be"),
    (
        "another issuer",
        lambda: _hub_signed({"typ": "at+jwt"}, iss="https://evil.example"),
        NOW,
        "issuer",
    ),
    (
        "another audience",
        lambda: _hub_signed({"typ": "at+jwt"}, aud="https://api.example"),
        NOW,
        "audience",
    ),
    ("no department", lambda: _hub_signed({"typ": "at+jwt"}, department=None), NOW, "department"),
    ("cnf not an object", lambda: _hub_signed({"typ": "at+jwt"}, cnf="jkt"), NOW, "cnf must be"),
    ("jkt not a string", lambda: _hub_signed({"typ": "at+jwt"}, cnf={"jkt": 1}), NOW, "cnf.jkt"),
    ("expired", lambda: issued(), NOW + 300 + SKEW, "expired"),
    ("issued in the future", lambda: issued(now=NOW + SKEW + 1), NOW, "in the future"),
    ("not a JWT", lambda: "a.b.c", NOW, "not valid"),
]


@pytest.mark.parametrize(
    ("make", "now", "reason"),
    [attack[1:] for attack in TOKEN_ATTACKS],
    ids=[attack[0] for attack in TOKEN_ATTACKS],
)
def test_a_bad_access_token_is_refused(make: Any, now: int, reason: str) -> None:
    with pytest.raises(InvalidToken, match=reason):
        check_token(make(), now=now)
