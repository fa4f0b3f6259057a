"""Sender-constrained tokens (RFC 9449 DPoP) at the token endpoint and at the record
endpoint, attacked in the spirit of the FAPI 2.0 conformance suite and OWASP API2.

Each refusal is asserted on what a client sees (status, RFC 9449 §7.1 challenge or
RFC 6749 §5.2 ``error``, RFC 9457 problem) and on the audit entry it left.
One hub per database serves the module.
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
from joserfc import jws, jwt
from joserfc.jwk import ECKey

from onceonly.adapters import DPoPKey

from tests.hub_testing import (
    DATABASES,
    RunningHub,
    audit_entry_for,
    granted_client_hub,
    problem_type,
)

CLIENT, DEPARTMENT = "social-welfare-adapter", "social-welfare"
ADDRESS, IDENTITY = "person.residential-address", "person.identity"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
BODY = {"subject": "38001085718", "purpose": "benefit-eligibility"}


@dataclass
class World:
    hub: RunningHub
    client_key: ECKey
    dpop: DPoPKey

    @property
    def token_url(self) -> str:
        return f"{self.hub.url}/oauth/token"

    def query_url(self, item: str = ADDRESS) -> str:
        return f"{self.hub.url}/v1/items/{item}/records/query"


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with granted_client_hub(
        request,
        tmp_path_factory,
        client_id=CLIENT,
        department=DEPARTMENT,
        items=(ADDRESS, IDENTITY),
    ) as (hub, key):
        yield World(hub=hub, client_key=key, dpop=DPoPKey.generate())


def assertion(world: World) -> str:
    now = int(time.time())
    claims = {
        "iss": CLIENT,
        "sub": CLIENT,
        "aud": world.hub.settings.issuer,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode({"alg": "ES256", "kid": world.client_key.kid}, claims, world.client_key)


def ask_token(world: World, headers: dict[str, str], **form: str) -> httpx.Response:
    data = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion(world),
        **form,
    }
    return httpx.post(world.token_url, data=data, headers=headers)


def bound_token(world: World, scope: str = f"read:{IDENTITY}") -> str:
    """A token bound to ``world.dpop``; by default for IDENTITY only, so that a query for
    ADDRESS that passes authentication ends in 403 insufficient-scope."""
    response = ask_token(world, {"DPoP": world.dpop.proof("POST", world.token_url)}, scope=scope)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def ask(world: World, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(world.query_url(), json=BODY, headers=headers)


# --- building bad proofs by hand --------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def ath(token: str) -> str:
    return b64url(hashlib.sha256(token.encode()).digest())


def proof_claims(world: World, token: str | None, **changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "jti": uuid.uuid4().hex,
        "htm": "POST",
        "htu": world.query_url(),
        "iat": int(time.time()),
    }
    if token is not None:
        claims["ath"] = ath(token)
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def signed_proof(
    key: ECKey, claims: dict[str, Any], *, header: dict[str, Any] | None = None
) -> str:
    protected = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    protected.update(header or {})
    protected = {name: value for name, value in protected.items() if value is not None}
    return jws.serialize_compact(protected, json.dumps(claims).encode(), key, algorithms=["ES256"])


def unsigned(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    text = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{text}.{b64url(sign(text.encode()))}"


@pytest.fixture(scope="module")
def dpop_private(world: World) -> ECKey:
    """The world's DPoP key as a joserfc key, to sign proofs with changed claims."""
    return world.dpop._key  # type: ignore[return-value]


Headers = list[tuple[str, str]]
ProofAttack = Callable[[World, ECKey, str], Headers]


def _with(proof: Callable[[World, ECKey, str], str]) -> ProofAttack:
    return lambda world, key, token: [
        ("Authorization", f"DPoP {token}"),
        ("DPoP", proof(world, key, token)),
    ]


def _two_proofs(world: World, key: ECKey, token: str) -> Headers:
    return [
        ("Authorization", f"DPoP {token}"),
        ("DPoP", world.dpop.proof("POST", world.query_url(), access_token=token)),
        ("DPoP", world.dpop.proof("POST", world.query_url(), access_token=token)),
    ]


def _alg_none(world: World, key: ECKey, token: str) -> str:
    header = {"typ": "dpop+jwt", "alg": "none", "jwk": key.as_dict(private=False)}
    return unsigned(header, proof_claims(world, token), lambda _: b"")


def _hs256_keyed_by_jwk(world: World, key: ECKey, token: str) -> str:
    public = key.as_dict(private=False)
    secret = json.dumps(public).encode()
    header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": public}
    claims = proof_claims(world, token)
    return unsigned(header, claims, lambda data: hmac.new(secret, data, hashlib.sha256).digest())


def _private_jwk(world: World, key: ECKey, token: str) -> str:
    return signed_proof(key, proof_claims(world, token), header={"jwk": key.as_dict(private=True)})


def _other_key(world: World, key: ECKey, token: str) -> str:
    return signed_proof(ECKey.generate_key("P-256"), proof_claims(world, token))


PROOF_ATTACKS: dict[str, ProofAttack] = {
    "no-proof": lambda world, key, token: [("Authorization", f"DPoP {token}")],
    "two-proofs": _two_proofs,
    "another-url": _with(
        lambda w, k, t: signed_proof(k, proof_claims(w, t, htu=w.query_url(IDENTITY)))
    ),
    "another-host": _with(
        lambda w, k, t: signed_proof(k, proof_claims(w, t, htu="https://evil.example/v1/items"))
    ),
    "another-method": _with(lambda w, k, t: signed_proof(k, proof_claims(w, t, htm="GET"))),
    "no-ath": _with(lambda w, k, t: signed_proof(k, proof_claims(w, None))),
    "ath-of-another-token": _with(
        lambda w, k, t: signed_proof(k, proof_claims(w, t, ath=ath("x")))
    ),
    "iat-too-old": _with(
        lambda w, k, t: signed_proof(k, proof_claims(w, t, iat=int(time.time()) - 600))
    ),
    "iat-in-the-future": _with(
        lambda w, k, t: signed_proof(k, proof_claims(w, t, iat=int(time.time()) + 600))
    ),
    "no-jti": _with(lambda w, k, t: signed_proof(k, proof_claims(w, t, jti=None))),
    "typ-jwt": _with(lambda w, k, t: signed_proof(k, proof_claims(w, t), header={"typ": "JWT"})),
    "no-jwk": _with(lambda w, k, t: signed_proof(k, proof_claims(w, t), header={"jwk": None})),
    "alg-none": _with(_alg_none),
    "hs256-keyed-by-the-jwk": _with(_hs256_keyed_by_jwk),
    "private-jwk": _with(_private_jwk),
    "key-not-matching-cnf-jkt": _with(_other_key),
    "garbage": _with(lambda w, k, t: "a.b.c"),
    "oversized": _with(lambda w, k, t: signed_proof(k, proof_claims(w, t, pad="p" * 9000))),
}


@pytest.mark.parametrize("attack", PROOF_ATTACKS.values(), ids=PROOF_ATTACKS.keys())
def test_bad_dpop_proof_is_invalid_dpop_proof(
    world: World, dpop_private: ECKey, attack: ProofAttack
) -> None:
    headers = attack(world, dpop_private, bound_token(world))
    response = httpx.post(world.query_url(), json=BODY, headers=headers)
    assert_resource_refused(world, response, slug="invalid-dpop-proof", error="invalid_dpop_proof")


def assert_resource_refused(
    world: World, response: httpx.Response, *, slug: str, error: str
) -> None:
    assert response.status_code == 401, response.text
    assert problem_type(response) == slug
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("DPoP ")
    assert f'error="{error}"' in challenge
    assert 'algs="ES256 Ed25519 EdDSA PS256"' in challenge
    entry = audit_entry_for(world.hub, response, action="record.query")
    assert (entry["outcome"], entry["reason"]) == ("refused", slug)


def test_good_proof_passes_authentication(world: World) -> None:
    token = bound_token(world)
    response = ask(world, world.dpop.headers("POST", world.query_url(), token))
    assert response.status_code == 403, response.text  # authenticated; refused by scope
    assert problem_type(response) == "insufficient-scope"
    assert response.headers["www-authenticate"].startswith("DPoP ")


def test_replayed_proof_is_refused_on_every_replica(world: World) -> None:
    token = bound_token(world)
    headers = world.dpop.headers("POST", world.query_url(), token)
    assert ask(world, headers).status_code == 403
    assert_resource_refused(
        world, ask(world, headers), slug="invalid-dpop-proof", error="invalid_dpop_proof"
    )


def test_dpop_bound_token_used_as_bearer_is_refused(world: World) -> None:
    token = bound_token(world)
    response = ask(world, {"Authorization": f"Bearer {token}"})
    assert_resource_refused(world, response, slug="invalid-token", error="invalid_token")


@pytest.mark.parametrize("forged", ["a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "not-a-jwt"])
def test_a_token_that_does_not_verify_sent_as_bearer_gets_the_dpop_challenge(
    world: World, forged: str
) -> None:
    """RFC 9449 §7.1: where only DPoP is taken, the challenge names DPoP; a token that
    did not verify, sent as Bearer, was challenged ``Bearer`` (helper-141)."""
    response = ask(world, {"Authorization": f"Bearer {forged}"})
    assert_resource_refused(world, response, slug="invalid-token", error="invalid_token")


def test_stolen_token_is_useless_without_its_key(world: World) -> None:
    token = bound_token(world)
    thief = DPoPKey.generate()
    response = ask(world, thief.headers("POST", world.query_url(), token))
    assert_resource_refused(world, response, slug="invalid-dpop-proof", error="invalid_dpop_proof")


def test_unbound_token_is_refused_where_dpop_is_required(world: World) -> None:
    now = int(time.time())
    claims = {
        "iss": world.hub.settings.issuer,
        "aud": world.hub.settings.issuer,
        "sub": CLIENT,
        "client_id": CLIENT,
        "department": DEPARTMENT,
        "scope": f"read:{ADDRESS}",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 60,
    }
    signer = world.hub.keys.signing
    token = jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": signer.kid}, claims, signer)
    for headers in (
        {"Authorization": f"Bearer {token}"},
        world.dpop.headers("POST", world.query_url(), token),
    ):
        assert_resource_refused(
            world, ask(world, headers), slug="invalid-token", error="invalid_token"
        )


@pytest.mark.parametrize(
    "header",
    ["DPoP", "Bearer", "dpop a.b", "Basic Zm9vOmJhcg==", "DPoP " + "x" * 9000],
    ids=["empty", "bearer-empty", "garbage", "basic", "oversized"],
)
def test_malformed_authorization_is_invalid_token(world: World, header: str) -> None:
    response = ask(world, {"Authorization": header, "DPoP": "a.b.c"})
    assert response.status_code == 401, response.text
    assert problem_type(response) == "invalid-token"
    assert response.headers["www-authenticate"].startswith("DPoP ")


# --- the token endpoint (RFC 9449 §5) ---------------------------------------------------


def assert_token_refused(world: World, response: httpx.Response, *, error: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error
    assert problem_type(response) == "oauth-" + error.replace("_", "-")
    entry = audit_entry_for(world.hub, response, action="token.issue")
    assert (entry["outcome"], entry["reason"]) == ("refused", problem_type(response))


def test_token_request_without_proof_is_refused_when_dpop_is_required(world: World) -> None:
    assert_token_refused(world, ask_token(world, {}), error="invalid_dpop_proof")


def test_token_is_bound_to_the_proofs_key(world: World) -> None:
    response = ask_token(world, {"DPoP": world.dpop.proof("POST", world.token_url)})
    assert response.json()["token_type"] == "DPoP"
    claims = jwt.decode(response.json()["access_token"], world.hub.keys.signing).claims
    assert claims["cnf"] == {"jkt": world.dpop.thumbprint}


TOKEN_PROOF_ATTACKS: dict[str, Callable[[World, ECKey], str]] = {
    "another-url": lambda w, k: signed_proof(k, proof_claims(w, None)),
    "another-method": lambda w, k: signed_proof(
        k, proof_claims(w, None, htm="GET", htu=w.token_url)
    ),
    "typ-jwt": lambda w, k: signed_proof(
        k, proof_claims(w, None, htu=w.token_url), header={"typ": "JWT"}
    ),
    "expired": lambda w, k: signed_proof(
        k, proof_claims(w, None, htu=w.token_url, iat=int(time.time()) - 3600)
    ),
    "garbage": lambda w, k: "not-a-jwt",
}


@pytest.mark.parametrize("attack", TOKEN_PROOF_ATTACKS.values(), ids=TOKEN_PROOF_ATTACKS.keys())
def test_bad_proof_at_the_token_endpoint_is_invalid_dpop_proof(
    world: World, dpop_private: ECKey, attack: Callable[[World, ECKey], str]
) -> None:
    response = ask_token(world, {"DPoP": attack(world, dpop_private)})
    assert_token_refused(world, response, error="invalid_dpop_proof")


def test_proof_replayed_at_the_token_endpoint_is_refused(world: World) -> None:
    proof = world.dpop.proof("POST", world.token_url)
    assert ask_token(world, {"DPoP": proof}).status_code == 200
    assert_token_refused(world, ask_token(world, {"DPoP": proof}), error="invalid_dpop_proof")
