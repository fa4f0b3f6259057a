"""The token endpoint and access-token checks, in the spirit of the FAPI conformance
suite and the OWASP API Security Top 10 (API2, broken authentication).

Each refusal is asserted on what a client sees (status, RFC 6749 §5.2 ``error``,
RFC 9457 problem body) and on what an auditor sees (a ``refused`` entry).
One hub per database serves the whole module; every test mints fresh assertions.
"""

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from onceonly.adapters import DPoPKey, public_jwks
from onceonly.hub.auth import service

from tests.hub_testing import (
    CATALOGUE,
    DATABASES,
    RunningHub,
    audit_entry_for,
    granted_client_hub,
    problem_type,
)

CLIENT = "social-welfare-adapter"
DEPARTMENT = "social-welfare"
ADDRESS = "person.residential-address"
IDENTITY = "person.identity"
NOT_SHARED = "tax.audit-risk-assessment"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SKEW = 10  # the hub's default clock_skew
Claims = dict[str, Any]
DPOP = DPoPKey.generate()  # the client's proof-of-possession key (RFC 9449)


@dataclass
class TokenWorld:
    hub: RunningHub
    client_key: ECKey

    @property
    def issuer(self) -> str:
        return self.hub.settings.issuer


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TokenWorld]:
    with granted_client_hub(
        request,
        tmp_path_factory,
        client_id=CLIENT,
        department=DEPARTMENT,
        items=(ADDRESS, IDENTITY),
    ) as (hub, key):
        yield TokenWorld(hub=hub, client_key=key)


# --- building assertions and tokens -------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: Claims, claims: Claims, sign: Callable[[bytes], bytes]) -> str:
    """A JWS built by hand, for the algorithms no honest library will sign with."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def assertion_claims(world: TokenWorld, **changes: Any) -> Claims:
    """Good RFC 7523 claims; a change to ``None`` leaves the claim out."""
    now = int(time.time())
    claims: Claims = {
        "iss": CLIENT,
        "sub": CLIENT,
        "aud": world.issuer,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def assertion(
    world: TokenWorld,
    *,
    key: ECKey | None = None,
    header: Claims | None = None,
    **changes: Any,
) -> str:
    """An ES256 assertion naming the client's kid, signed by ``key`` (default: the client's)."""
    signer = key or world.client_key
    protected = {"alg": "ES256", "kid": world.client_key.kid, **(header or {})}
    return jwt.encode(protected, assertion_claims(world, **changes), signer)


def token_form(signed: str, /, **changes: str | None) -> dict[str, str]:
    """A token request with the assertion ``signed``; a change to ``None`` leaves it out."""
    form: dict[str, str | None] = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed,
        **changes,
    }
    return {name: value for name, value in form.items() if value is not None}


def ask_token(world: TokenWorld, form: dict[str, str], *, proof: bool = True) -> httpx.Response:
    """A token request, with a DPoP proof (RFC 9449 §5) unless ``proof`` is false."""
    url = f"{world.hub.url}/oauth/token"
    headers = {"DPoP": DPOP.proof("POST", url)} if proof else {}
    return httpx.post(url, data=form, headers=headers)


def access_token(world: TokenWorld, **form: str) -> str:
    response = ask_token(world, token_form(assertion(world), **form))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def hub_signed(
    world: TokenWorld, *, key: ECKey | None = None, typ: str = "at+jwt", **changes: Any
) -> str:
    """An access token as the hub would issue it, with ``changes`` to its claims (a
    change to ``None`` sends the claim as JSON null)."""
    signer = key or world.hub.keys.signing
    now = int(time.time())
    claims: Claims = {
        "iss": world.issuer,
        "aud": world.issuer,
        "sub": CLIENT,
        "client_id": CLIENT,
        "department": DEPARTMENT,
        "scope": f"read:{ADDRESS} read:{IDENTITY}",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 300,
        "cnf": {"jkt": DPOP.thumbprint},
        **changes,
    }
    return jwt.encode({"alg": "ES256", "typ": typ, "kid": signer.kid}, claims, signer)


NOT_AUDITED = "not audited"


def assert_token_refused(
    world: TokenWorld,
    response: httpx.Response,
    *,
    status: int,
    error: str,
    reason: str | None = None,
) -> None:
    """The RFC 6749 §5.2 error as a problem, and a ``refused`` audit entry whose reason
    is ``reason`` (by default the problem type); ``NOT_AUDITED``: no entry at all."""
    assert response.status_code == status, response.text
    assert problem_type(response) == "oauth-" + error.replace("_", "-")
    assert response.json()["error"] == error
    assert response.json()["error_description"]
    assert response.headers["cache-control"] == "no-store"  # as the token answer (helper-141)
    if reason == NOT_AUDITED:
        assert_not_audited(world, response)
        return
    entry = audit_entry_for(world.hub, response, action="token.issue")
    assert (entry["outcome"], entry["reason"]) == ("refused", reason or problem_type(response))


def assert_not_audited(world: TokenWorld, response: httpx.Response) -> None:
    """No entry of any action holds the request id of ``response``."""
    request_id = response.headers["x-request-id"]
    with world.hub.admin() as admin:
        cursor = None
        while True:
            page = admin.audit_entries(limit=1000, cursor=cursor)
            found = [e for e in page["entries"] if e["entry"].get("request_id") == request_id]
            assert found == [], found
            cursor = page["next_cursor"]
            if cursor is None:
                return


def assert_refused_for(
    world: TokenWorld, response: httpx.Response, *, client: str | None, status: int = 400
) -> None:
    """An ``invalid_request`` refusal, audited; its entry names ``client`` (None: nobody)."""
    assert_token_refused(world, response, status=status, error="invalid_request")
    entry = audit_entry_for(world.hub, response, action="token.issue")
    assert entry.get("client") == client, entry


# --- a good assertion ----------------------------------------------------------------


def test_valid_assertion_gets_an_rfc9068_access_token(world: TokenWorld) -> None:
    response = ask_token(world, token_form(assertion(world)))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert (body["token_type"], body["expires_in"]) == ("DPoP", 300)
    assert set(body["scope"].split()) == {f"read:{ADDRESS}", f"read:{IDENTITY}", "audit:read"}
    jwks = httpx.get(f"{world.hub.url}/.well-known/jwks.json").json()
    token = jwt.decode(body["access_token"], KeySet.import_key_set(jwks), algorithms=["ES256"])
    assert token.header["typ"] == "at+jwt"
    claims = token.claims
    assert (claims["iss"], claims["aud"]) == (world.issuer, world.issuer)
    assert (claims["sub"], claims["client_id"]) == (CLIENT, CLIENT)
    assert claims["department"] == DEPARTMENT
    assert claims["scope"] == body["scope"]
    assert claims["exp"] - claims["iat"] == 300
    assert claims["jti"]
    assert claims["cnf"] == {"jkt": DPOP.thumbprint}
    entry = audit_entry_for(world.hub, response, action="token.issue")
    assert (entry["outcome"], entry["client"], entry["department"]) == ("ok", CLIENT, DEPARTMENT)


def test_scope_subset_gives_a_token_with_only_that_scope(world: TokenWorld) -> None:
    response = ask_token(world, token_form(assertion(world), scope=f"read:{IDENTITY}"))
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == f"read:{IDENTITY}"
    claims = jwt.decode(response.json()["access_token"], world.hub.keys.signing).claims
    assert claims["scope"] == f"read:{IDENTITY}"


@pytest.mark.parametrize("scope", [f"read:{NOT_SHARED}", f"read:{IDENTITY} read:tax.debt-status"])
def test_scope_beyond_the_departments_grants_is_invalid_scope(
    world: TokenWorld, scope: str
) -> None:
    response = ask_token(world, token_form(assertion(world), scope=scope))
    assert_token_refused(world, response, status=400, error="invalid_scope")
    assert "tax.debt-status" not in response.json()["error_description"]
    assert NOT_SHARED not in response.json()["error_description"]


@pytest.mark.parametrize(
    "scope",
    [
        " ",
        f"read:{IDENTITY}  audit:read",
        f" read:{IDENTITY}",
        f"read:{IDENTITY} ",
        'a"b',
        "a\\b",
        "audit:read \u00e9",
    ],
    ids=["space", "two-spaces", "leading", "trailing", "quote", "backslash", "non-ascii"],
)
def test_a_scope_that_is_not_scope_tokens_is_invalid_scope_and_not_repeated(
    world: TokenWorld, scope: str
) -> None:
    """RFC 6749 §3.3: scope-token = 1*NQCHAR, one space between tokens. A lone space
    got a token that could do nothing, and the description repeated ``a"b``, which RFC
    6749 §5.2 does not allow in it (helper-141)."""
    response = ask_token(world, token_form(assertion(world), scope=scope))
    assert_token_refused(world, response, status=400, error="invalid_scope")
    description = response.json()["error_description"]
    assert "RFC 6749 section 3.3" in description
    assert "RFC 6749 §3.3" in response.json()["detail"]
    assert all(0x20 <= ord(char) <= 0x7E and char not in '"\\' for char in description)


def test_an_empty_scope_is_as_if_none_was_sent(world: TokenWorld) -> None:
    """RFC 6749 §3.1: a parameter sent without a value is treated as omitted: every
    scope the department holds (helper-143; it got a token with no scope, then 400)."""
    response = ask_token(world, token_form(assertion(world), scope=""))
    assert response.status_code == 200, response.text
    assert set(response.json()["scope"].split()) == {
        f"read:{ADDRESS}",
        f"read:{IDENTITY}",
        "audit:read",
    }


def test_a_scope_token_repeated_is_asked_for_once(world: TokenWorld) -> None:
    response = ask_token(world, token_form(assertion(world), scope="audit:read audit:read"))
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "audit:read"


@pytest.mark.parametrize("authorization", ["Basic Y2xpZW50Ong=", "Bearer x", "DPoP x"])
def test_an_assertion_and_an_authorization_header_are_two_methods_refused(
    world: TokenWorld, authorization: str
) -> None:
    """RFC 6749 §2.3: a client MUST NOT use more than one authentication method in a
    request. An assertion with Basic credentials beside it got a token (helper-141)."""
    url = f"{world.hub.url}/oauth/token"
    headers = {"DPoP": DPOP.proof("POST", url), "Authorization": authorization}
    response = httpx.post(url, data=token_form(assertion(world)), headers=headers)
    assert_refused_for(world, response, client=CLIENT)  # its assertion verifies (helper-172)
    assert "authenticates its client twice" in response.json()["detail"]


# --- client authentication (RFC 7523 §3) -----------------------------------------------


def _alg_none(world: TokenWorld) -> str:
    header = {"alg": "none", "kid": world.client_key.kid}
    return compact(header, assertion_claims(world), lambda _: b"")


def _hmac_keyed_by(secret: Callable[[ECKey], bytes]) -> Callable[[TokenWorld], str]:
    """Algorithm confusion: HS256 whose secret is the client's *public* key."""

    def build(world: TokenWorld) -> str:
        header = {"alg": "HS256", "kid": world.client_key.kid}
        key = secret(world.client_key)
        return compact(
            header,
            assertion_claims(world),
            lambda data: hmac.new(key, data, hashlib.sha256).digest(),
        )

    return build


def _public_jwk_json(key: ECKey) -> bytes:
    return json.dumps(public_jwks(key)["keys"][0]).encode()


def _public_pem(key: ECKey) -> bytes:
    return key.as_pem(private=False)


def _same_kid_other_key(world: TokenWorld) -> str:
    return assertion(world, key=ECKey.generate_key("P-256", auto_kid=True))


def _attacker_key_in_header(member: str) -> Callable[[TokenWorld], str]:
    """The assertion points at (``jku``) or embeds (``jwk``) the attacker's own key."""

    def build(world: TokenWorld) -> str:
        attacker = ECKey.generate_key("P-256", auto_kid=True)
        where: Any = (
            "https://evil.example/jwks.json" if member == "jku" else attacker.as_dict(private=False)
        )
        return assertion(world, key=attacker, header={"kid": attacker.kid, member: where})

    return build


def _hub_token_as_assertion(world: TokenWorld) -> str:
    return hub_signed(world, typ="JWT")  # iss is the hub, not the client


def _expired(world: TokenWorld) -> str:
    now = int(time.time())
    return assertion(world, iat=now - 300, exp=now - SKEW - 60)


def _too_long_lived(world: TokenWorld) -> str:
    return assertion(world, exp=int(time.time()) + 120 + SKEW + 60)


def _issued_in_the_future(world: TokenWorld) -> str:
    now = int(time.time())
    return assertion(world, iat=now + SKEW + 60, exp=now + 100)


def _oversized(world: TokenWorld) -> str:
    return assertion(world, padding="x" * 9000)


def _not_before(seconds: int) -> Callable[[TokenWorld], str]:
    return lambda world: assertion(world, nbf=int(time.time()) + seconds)


def _nbf_null(world: TokenWorld) -> str:
    claims = {**assertion_claims(world), "nbf": None}
    return jwt.encode({"alg": "ES256", "kid": world.client_key.kid}, claims, world.client_key)


# The reasons an auditor reads: a signature that does not verify and an unknown client
# are answered alike, but logged apart; a request naming no client is not logged.
SIGNATURE = "client-signature-invalid"
CLAIMS = "oauth-invalid-client"
ALGORITHM = "client-assertion-algorithm"  # judged before any client is read (decision 0075)
ASSERTION_ATTACKS: dict[str, tuple[Callable[[TokenWorld], str], str]] = {
    "alg-none": (_alg_none, ALGORITHM),
    "hs256-keyed-by-public-jwk-json": (_hmac_keyed_by(_public_jwk_json), ALGORITHM),
    "hs256-keyed-by-public-pem": (_hmac_keyed_by(_public_pem), ALGORITHM),
    "other-key-same-kid": (_same_kid_other_key, SIGNATURE),
    "unknown-kid": (lambda world: assertion(world, header={"kid": "no-such-key"}), SIGNATURE),
    "attacker-key-by-jku": (_attacker_key_in_header("jku"), SIGNATURE),
    "attacker-key-embedded-jwk": (_attacker_key_in_header("jwk"), SIGNATURE),
    "hub-token-as-assertion": (_hub_token_as_assertion, SIGNATURE),
    "missing-jti": (lambda world: assertion(world, jti=None), CLAIMS),
    "missing-exp": (lambda world: assertion(world, exp=None), CLAIMS),
    "exp-as-string": (lambda world: assertion(world, exp=str(int(time.time()) + 60)), CLAIMS),
    "jti-not-a-string": (lambda world: assertion(world, jti=12345), CLAIMS),
    "jti-too-long": (lambda world: assertion(world, jti="j" * 300), CLAIMS),
    "aud-token-endpoint": (
        lambda world: assertion(world, aud=f"{world.issuer}/oauth/token"),
        CLAIMS,
    ),
    "aud-two-audiences": (
        lambda world: assertion(world, aud=[world.issuer, "https://other.example"]),
        CLAIMS,
    ),
    "expired": (_expired, CLAIMS),
    "exp-beyond-120s": (_too_long_lived, CLAIMS),
    "iat-in-the-future": (_issued_in_the_future, CLAIMS),
    "iat-as-string": (lambda world: assertion(world, iat=str(int(time.time()))), CLAIMS),
    "nbf-an-hour-ahead": (_not_before(3600), CLAIMS),
    "nbf-beyond-the-skew": (_not_before(SKEW + 30), CLAIMS),
    "nbf-as-string": (lambda world: assertion(world, nbf=str(int(time.time()))), CLAIMS),
    "nbf-null": (_nbf_null, CLAIMS),
    "iss-not-sub": (lambda world: assertion(world, iss="tax-adapter"), CLAIMS),
    "unknown-client": (
        lambda world: assertion(world, iss="nobody", sub="nobody"),
        "client-unknown",
    ),
    "oversized": (_oversized, NOT_AUDITED),
    "garbage": (lambda world: "a.b.c", NOT_AUDITED),
    "not-a-jws": (lambda world: "not-a-jwt", NOT_AUDITED),
    "empty": (lambda world: "", NOT_AUDITED),
}


@pytest.mark.parametrize(
    ("attack", "reason"), ASSERTION_ATTACKS.values(), ids=ASSERTION_ATTACKS.keys()
)
def test_bad_client_assertion_is_invalid_client(
    world: TokenWorld, attack: Callable[[TokenWorld], str], reason: str
) -> None:
    response = ask_token(world, token_form(attack(world)))
    assert_token_refused(world, response, status=401, error="invalid_client", reason=reason)


def test_an_assertion_not_valid_before_a_moment_within_the_skew_is_accepted(
    world: TokenWorld,
) -> None:
    """RFC 7523 §3 item 5: nbf is honoured, with the hub's clock skew."""
    now = int(time.time())
    for nbf in (now - 30, now, now + SKEW - 3):
        response = ask_token(world, token_form(assertion(world, nbf=nbf)))
        assert response.status_code == 200, (nbf, response.text)


def test_a_not_yet_valid_assertion_says_so_to_its_signer(world: TokenWorld) -> None:
    response = ask_token(world, token_form(_not_before(3600)(world)))
    assert response.status_code == 401
    assert "nbf" in response.json()["error_description"]


def test_unknown_client_and_bad_signature_get_one_answer_but_two_reasons(
    world: TokenWorld,
) -> None:
    """The answer tells nobody whether a client id exists; the audit log tells an
    auditor what happened."""
    unknown = ask_token(world, token_form(assertion(world, iss="nobody", sub="nobody")))
    forged = ask_token(world, token_form(_same_kid_other_key(world)))
    answers = [unknown, forged]
    assert {a.status_code for a in answers} == {401}
    assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1
    assert {a.headers["content-type"] for a in answers} == {"application/problem+json"}
    reasons = [audit_entry_for(world.hub, a, action="token.issue") for a in answers]
    assert [(r["reason"], r.get("client")) for r in reasons] == [
        ("client-unknown", None),
        ("client-signature-invalid", CLIENT),
    ]
    assert reasons[1]["department"] == DEPARTMENT


def test_assertion_is_accepted_once_only(world: TokenWorld) -> None:
    once = assertion(world)
    assert ask_token(world, token_form(once)).status_code == 200
    replayed = ask_token(world, token_form(once))
    assert_token_refused(world, replayed, status=401, error="invalid_client")
    assert "replay" in replayed.json()["error_description"]


@pytest.mark.parametrize(
    "changes",
    [
        {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"},
        {"client_assertion_type": None},
        {"client_assertion": None},
        {"client_id": "tax-adapter"},
    ],
    ids=["saml-assertion-type", "no-assertion-type", "no-assertion", "client-id-not-sub"],
)
def test_other_client_authentication_is_invalid_client(
    world: TokenWorld, changes: dict[str, str | None]
) -> None:
    response = ask_token(world, token_form(assertion(world), **changes))
    named = changes != {"client_assertion": None}  # else nothing names the client
    reason = None if named else NOT_AUDITED
    assert_token_refused(world, response, status=401, error="invalid_client", reason=reason)


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": "client_credentials"},
        {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE},
        {"grant_type": "client_credentials", "scope": f"read:{ADDRESS}"},
        {"grant_type": "client_credentials", "client_assertion": "a.b.c"},
    ],
    ids=["no-credentials", "assertion-type-only", "scope-only", "unreadable-assertion"],
)
def test_a_token_request_that_names_no_client_is_answered_and_not_audited(
    world: TokenWorld, form: dict[str, str]
) -> None:
    """Anonymous requests (scanners, probes, misconfigured clients) are a decision
    about nobody: 401 invalid_client, counted in a metric, and no audit entry."""
    before = unnamed_count(world, "/oauth/token")
    response = ask_token(world, form)
    assert_token_refused(world, response, status=401, error="invalid_client", reason=NOT_AUDITED)
    assert unnamed_count(world, "/oauth/token") == before + 1


def unnamed_count(world: TokenWorld, endpoint: str) -> float:
    """The hub's count of OAuth requests that named no client, from /metrics."""
    text = world.hub.metrics().text
    line = f'onceonly_oauth_unnamed_requests_total{{endpoint="{endpoint}"}} '
    values = [float(row.removeprefix(line)) for row in text.splitlines() if row.startswith(line)]
    return values[0] if values else 0.0


# --- the request itself (RFC 6749 §3.2, §4.4.2) -------------------------------------------


def test_missing_grant_type_is_invalid_request(world: TokenWorld) -> None:
    response = ask_token(world, token_form(assertion(world), grant_type=None))
    assert_token_refused(world, response, status=400, error="invalid_request")


@pytest.mark.parametrize("grant_type", ["password", "authorization_code", "refresh_token"])
def test_other_grant_types_are_unsupported(world: TokenWorld, grant_type: str) -> None:
    response = ask_token(world, token_form(assertion(world), grant_type=grant_type))
    assert_token_refused(world, response, status=400, error="unsupported_grant_type")


def test_parameter_sent_twice_is_invalid_request(world: TokenWorld) -> None:
    form = httpx.QueryParams(token_form(assertion(world))).add("grant_type", "client_credentials")
    response = httpx.post(
        f"{world.hub.url}/oauth/token",
        content=str(form),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_refused_for(world, response, client=CLIENT)  # its assertion verifies: named
    assert "more than once" in response.json()["error_description"]


def test_json_body_is_invalid_request(world: TokenWorld) -> None:
    response = httpx.post(f"{world.hub.url}/oauth/token", json=token_form(assertion(world)))
    assert_token_refused(world, response, status=400, error="invalid_request", reason=NOT_AUDITED)


def test_oversized_form_is_invalid_request(world: TokenWorld) -> None:
    response = ask_token(world, token_form(assertion(world), padding="p" * 20_000))
    assert_refused_for(world, response, client=CLIENT)  # its assertion verifies: named
    assert response.json()["detail"] == "the request is larger than 16384 bytes"


def test_form_that_is_not_utf8_is_invalid_request(world: TokenWorld) -> None:
    response = httpx.post(
        f"{world.hub.url}/oauth/token",
        content=b"grant_type=\xff\xfe",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_token_refused(world, response, status=400, error="invalid_request", reason=NOT_AUDITED)


def form_request(world: TokenWorld, pairs: list[tuple[str, str]]) -> httpx.Response:
    """A token request of these form pairs, in order and repeated as given, with a proof."""
    url = f"{world.hub.url}/oauth/token"
    return httpx.post(
        url,
        content=str(httpx.QueryParams(pairs)),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "DPoP": DPOP.proof("POST", url),
        },
    )


CONTROL = "\u00f6v\u00e1m\u001a>HW"  # a name a fuzzer sent: with a control character


@pytest.mark.parametrize("times", [1, 2, 3])
def test_an_unknown_parameter_is_ignored_however_often_it_is_sent(
    world: TokenWorld, times: int
) -> None:
    """RFC 6749 §3.2: the server ignores parameters it does not recognize."""
    pairs = list(token_form(assertion(world)).items()) + [(CONTROL, "x")] * times
    response = form_request(world, pairs)
    assert response.status_code == 200, response.text


def test_a_known_parameter_sent_twice_is_named_without_what_the_caller_wrote(
    world: TokenWorld,
) -> None:
    pairs = [*token_form(assertion(world)).items(), (CONTROL, "1"), ("scope", "a"), ("scope", "b")]
    response = form_request(world, pairs)
    assert_refused_for(world, response, client=CLIENT)  # its assertion verifies: named
    assert response.json()["detail"] == "the parameter scope is sent more than once"


def test_an_unreadable_form_whose_assertion_does_not_verify_names_nobody(
    world: TokenWorld,
) -> None:
    """A review (helper-172): a request that names a client is audited whatever its answer,
    but one whose form could not be read wholly (a parameter twice, a form over its
    limit) left no entry (the tests above). What can be read of it names the client only
    when the assertion there verifies; this one is audited, naming nobody."""
    forged = token_form(assertion(world, key=ECKey.generate_key("P-256")))
    unverified = form_request(world, [*forged.items(), ("scope", "a"), ("scope", "b")])
    assert_refused_for(world, unverified, client=None)


def test_what_can_be_read_of_a_form_is_read_from_its_first_16_kib_only() -> None:
    """A form refused for its size is read only as far as a form may go to name its
    client (a review, helper-178: the whole body was parsed, before the address's
    budget; 16 MiB of "a=&" took 6 s)."""
    form = "application/x-www-form-urlencoded"
    named = "client_id=c1&" + "a=&" * 100_000
    assert service.readable_part(named.encode(), form) == {"client_id": "c1"}
    late = "a=&" * 6_000 + "client_id=c1"  # past the 16,384th byte
    assert service.readable_part(late.encode(), form) == {}


def test_a_body_over_the_hubs_limit_is_an_oauth_error_not_read(world: TokenWorld) -> None:
    """The 413 of a body declared too large carries RFC 6749's error members and
    ``no-store``, as every answer of the token endpoint; nothing is read to name a
    client, so nothing is audited."""
    limit = world.hub.settings.max_body_bytes
    response = form_request(world, [*token_form(assertion(world)).items(), ("pad", "x" * limit)])
    assert response.status_code == 413
    assert problem_type(response) == "payload-too-large"
    assert response.json()["error"] == "invalid_request"
    assert response.json()["error_description"] == f"the body is larger than {limit} bytes"
    assert response.headers["cache-control"] == "no-store"
    assert_not_audited(world, response)


@pytest.mark.parametrize(
    ("name", "value", "detail"),
    [
        ("scope", f"read:{IDENTITY}\x00", "the parameter scope holds a control character"),
        ("scope", f"read:{IDENTITY}\x1b[2J", "the parameter scope holds a control character"),
        ("scope", f"read:{IDENTITY}\x85", "the parameter scope holds a control character"),
        ("grant_type", "client_credentials\r\n", "the parameter grant_type holds a control"),
        (CONTROL, "x\x00", "a parameter holds a control character"),
    ],
    ids=["nul-in-scope", "escape-in-scope", "c1-in-scope", "crlf-in-grant-type", "unknown"],
)
def test_a_control_character_in_any_value_is_refused_before_it_is_read(
    world: TokenWorld, name: str, value: str, detail: str
) -> None:
    form = token_form(assertion(world))
    pairs = [(n, v) for n, v in form.items() if n != name] + [(name, value)]
    response = form_request(world, pairs)
    assert_refused_for(world, response, client=CLIENT)  # its assertion verifies: named
    assert response.json()["detail"].startswith(detail)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in response.text)


def test_a_form_whose_escapes_are_not_utf8_is_refused_not_replaced(world: TokenWorld) -> None:
    pairs = [*token_form(assertion(world)).items()]
    body = str(httpx.QueryParams(pairs)) + "&scope=read%3A%C3"
    response = httpx.post(
        f"{world.hub.url}/oauth/token",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_refused_for(world, response, client=CLIENT)  # its assertion verifies: named


# --- who a refusal is filed under (decision 0075) -------------------------------------------


def _two_proofs(world: TokenWorld) -> list[tuple[str, str]]:
    url = f"{world.hub.url}/oauth/token"
    return [("DPoP", DPOP.proof("POST", url)), ("DPoP", DPOP.proof("POST", url))]


def _proof_for_another_url(world: TokenWorld) -> list[tuple[str, str]]:
    return [("DPoP", DPOP.proof("POST", f"{world.hub.url}/oauth/introspect"))]


def refused_proof_entry(
    world: TokenWorld, signed: str, proofs: list[tuple[str, str]]
) -> dict[str, Any]:
    """The audit entry of a token request with assertion ``signed`` whose ``DPoP``
    headers (``proofs``) are refused ``invalid_dpop_proof``."""
    response = httpx.post(
        f"{world.hub.url}/oauth/token", data=token_form(signed), headers=httpx.Headers(proofs)
    )
    assert_token_refused(world, response, status=400, error="invalid_dpop_proof")
    return audit_entry_for(world.hub, response, action="token.issue")


@pytest.mark.parametrize("proofs", [_two_proofs, _proof_for_another_url], ids=["two", "wrong-htu"])
def test_a_refused_proof_is_filed_under_the_client_whose_assertion_verifies(
    world: TokenWorld, proofs: Callable[[TokenWorld], list[tuple[str, str]]]
) -> None:
    entry = refused_proof_entry(world, assertion(world), proofs(world))
    assert (entry["client"], entry["department"]) == (CLIENT, DEPARTMENT)


def test_an_unsupported_grant_is_filed_under_the_client_whose_assertion_verifies(
    world: TokenWorld,
) -> None:
    response = ask_token(world, token_form(assertion(world), grant_type="password"))
    assert_token_refused(world, response, status=400, error="unsupported_grant_type")
    entry = audit_entry_for(world.hub, response, action="token.issue")
    assert (entry["client"], entry["department"]) == (CLIENT, DEPARTMENT)


@pytest.mark.parametrize(
    "forged",
    [_same_kid_other_key, _expired, lambda world: assertion(world, aud="https://other.example")],
    ids=["other-key", "expired", "other-audience"],
)
def test_a_refused_proof_is_filed_under_nobody_when_the_assertion_does_not_verify(
    world: TokenWorld, forged: Callable[[TokenWorld], str]
) -> None:
    entry = refused_proof_entry(world, forged(world), _two_proofs(world))
    assert {"client", "department"}.isdisjoint(entry)


def test_a_verified_assertion_with_a_refused_proof_stays_usable(world: TokenWorld) -> None:
    """Noting the client spends nothing: the assertion's jti is spent only when a token
    is issued with it."""
    once = assertion(world)
    refused_proof_entry(world, once, _two_proofs(world))
    assert ask_token(world, token_form(once)).status_code == 200


@pytest.mark.parametrize(
    ("build", "reason", "says"),
    [
        (_alg_none, ALGORITHM, "alg must be one of ES256"),
        (_hmac_keyed_by(_public_pem), ALGORITHM, "alg must be one of ES256"),
        (lambda world: "a.b.c", "client-assertion-unreadable", "not a JWT"),
        (lambda world: "not-a-jwt", "client-assertion-unreadable", "not a JWT"),
    ],
    ids=["alg-none", "hs256", "garbage", "not-a-jws"],
)
def test_an_assertion_refused_unread_has_its_precise_reason(
    world: TokenWorld, build: Callable[[TokenWorld], str], reason: str, says: str
) -> None:
    """With ``client_id`` the request names a client, so its refusal is audited, with
    why, and under no client: nothing in it was verified."""
    response = ask_token(world, token_form(build(world), client_id=CLIENT))
    assert_token_refused(world, response, status=401, error="invalid_client", reason=reason)
    assert says in response.json()["detail"]
    assert "client" not in audit_entry_for(world.hub, response, action="token.issue")


# --- access tokens at a resource (RFC 6750, RFC 9068 §4) ------------------------------------


def query_url(world: TokenWorld, item: str) -> str:
    return f"{world.hub.url}/v1/items/{item}/records/query"


def query(
    world: TokenWorld, item: str, *, authorization: str | None, proof: str | None = None
) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization is not None else {}
    if proof is not None:
        headers["DPoP"] = proof
    return httpx.post(
        query_url(world, item),
        json={"subject": "38001085718", "purpose": "benefit-eligibility"},
        headers=headers,
    )


def dpop_query(world: TokenWorld, item: str, token: str) -> httpx.Response:
    """A query with the token as RFC 9449 §7.1 wants it: DPoP scheme, proof with ath."""
    return httpx.post(
        query_url(world, item),
        json={"subject": "38001085718", "purpose": "benefit-eligibility"},
        headers=DPOP.headers("POST", query_url(world, item), token),
    )


def assert_query_refused(
    world: TokenWorld, response: httpx.Response, *, slug: str = "invalid-token"
) -> None:
    assert response.status_code == 401, response.text
    assert problem_type(response) == slug
    assert response.headers["www-authenticate"].startswith("DPoP")
    entry = audit_entry_for(world.hub, response, action="record.query")
    assert (entry["outcome"], entry["reason"]) == ("refused", slug)


def test_issued_token_passes_authentication_at_a_resource(world: TokenWorld) -> None:
    token = access_token(world, scope=f"read:{IDENTITY}")
    response = dpop_query(world, ADDRESS, token)
    assert response.status_code == 403  # authenticated; refused by scope, not by identity
    assert problem_type(response) == "insufficient-scope"


def _other_hub(world: TokenWorld) -> str:
    stranger = ECKey.generate_key("P-256", auto_kid=True)
    return hub_signed(world, key=stranger, iss="https://other-hub.example")


def _expired_access(world: TokenWorld) -> str:
    now = int(time.time())
    return hub_signed(world, iat=now - 400, exp=now - SKEW - 60)


def _access_token_alg_none(world: TokenWorld) -> str:
    claims = jwt.decode(hub_signed(world), world.hub.keys.signing).claims
    return compact({"alg": "none", "typ": "at+jwt"}, claims, lambda _: b"")


def _access_token_keyed_by_hub_public_key(world: TokenWorld) -> str:
    claims = jwt.decode(hub_signed(world), world.hub.keys.signing).claims
    secret = json.dumps(world.hub.keys.public_jwks()["keys"][0]).encode()
    header = {"alg": "HS256", "typ": "at+jwt", "kid": world.hub.keys.kid}
    return compact(header, claims, lambda data: hmac.new(secret, data, hashlib.sha256).digest())


ACCESS_TOKEN_ATTACKS: dict[str, Callable[[TokenWorld], str]] = {
    "typ-jwt": lambda world: hub_signed(world, typ="JWT"),
    "alg-none": _access_token_alg_none,
    "hs256-keyed-by-hub-public-key": _access_token_keyed_by_hub_public_key,
    "no-exp": lambda world: hub_signed(world, exp=None),
    "garbage": lambda world: "a.b.c",
    "expired": _expired_access,
    "other-issuer-key": _other_hub,
    "other-issuer-claim": lambda world: hub_signed(world, iss="https://other-hub.example"),
    "other-audience": lambda world: hub_signed(world, aud="https://other-hub.example"),
    "other-department": lambda world: hub_signed(world, department="tax"),
    "unknown-client": lambda world: hub_signed(world, client_id="nobody", sub="nobody"),
    "client-assertion-as-access-token": lambda world: assertion(world),
}


@pytest.mark.parametrize("attack", ACCESS_TOKEN_ATTACKS.values(), ids=ACCESS_TOKEN_ATTACKS.keys())
def test_bad_access_token_is_refused(
    world: TokenWorld, attack: Callable[[TokenWorld], str]
) -> None:
    assert_query_refused(world, dpop_query(world, ADDRESS, attack(world)))


@pytest.mark.parametrize(
    "authorization",
    # "Bearer " with its trailing space arrives as "Bearer": HTTP strips the whitespace.
    ["Basic c29jaWFsLXdlbGZhcmUtYWRhcHRlcjpzZWNyZXQ=", "Bearer", "DPoP abc"],
    ids=["basic", "bearer-empty", "other-scheme"],
)
def test_authorization_without_a_bearer_token_is_refused(
    world: TokenWorld, authorization: str
) -> None:
    assert_query_refused(world, query(world, ADDRESS, authorization=authorization))


def test_access_token_in_another_scheme_is_refused(world: TokenWorld) -> None:
    token = access_token(world)
    assert_query_refused(world, query(world, ADDRESS, authorization=f"Basic {token}"))


# --- discovery (RFC 8414, RFC 7517, RFC 7638) -----------------------------------------------


def _shared_items() -> set[str]:
    documents = [json.loads(p.read_text()) for p in (CATALOGUE / "items").glob("*.json")]
    return {d["id"] for d in documents if d["sharing_class"] != "none"}


def test_server_metadata_follows_rfc8414(world: TokenWorld) -> None:
    response = httpx.get(f"{world.hub.url}/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    metadata = response.json()
    assert metadata["issuer"] == world.issuer
    assert metadata["token_endpoint"] == f"{world.issuer}/oauth/token"
    assert metadata["jwks_uri"] == f"{world.issuer}/.well-known/jwks.json"
    assert metadata["grant_types_supported"] == ["client_credentials"]
    assert metadata["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    for endpoint, path in (("introspection", "introspect"), ("revocation", "revoke")):
        assert metadata[f"{endpoint}_endpoint"] == f"{world.issuer}/oauth/{path}"
        assert metadata[f"{endpoint}_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert metadata["dpop_signing_alg_values_supported"] == ["ES256", "Ed25519", "EdDSA", "PS256"]
    assert metadata["tls_client_certificate_bound_access_tokens"] is False
    assert "none" not in metadata["token_endpoint_auth_signing_alg_values_supported"]
    assert not any(
        alg.startswith("HS") for alg in metadata["token_endpoint_auth_signing_alg_values_supported"]
    )
    shared = _shared_items()
    assert set(metadata["scopes_supported"]) == {
        f"{verb}:{item}" for item in shared for verb in ("read", "publish")
    } | {"audit:read"}
    assert f"read:{NOT_SHARED}" not in metadata["scopes_supported"]
    assert httpx.get(metadata["jwks_uri"]).status_code == 200


def _rfc7638_thumbprint(jwk: dict[str, Any]) -> str:
    required = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    canonical = json.dumps(required, sort_keys=True, separators=(",", ":")).encode()
    return b64url(hashlib.sha256(canonical).digest())


def test_jwks_has_only_public_members_and_thumbprint_kids(world: TokenWorld) -> None:
    keys = httpx.get(f"{world.hub.url}/.well-known/jwks.json").json()["keys"]
    assert keys
    for jwk in keys:
        assert set(jwk) <= {"kty", "crv", "x", "y", "kid", "alg", "use"}
        assert (jwk["kty"], jwk["alg"], jwk["use"]) == ("EC", "ES256", "sig")
        assert jwk["kid"] == _rfc7638_thumbprint(jwk)
