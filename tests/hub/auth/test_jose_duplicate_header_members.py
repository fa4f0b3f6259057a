"""A JOSE header that names a member twice is refused, as duplicate claims are (RFC 7515
§4 lets a parser refuse them or keep the last; the hub refuses): on every compact JWS
the hub receives, a DPoP proof, a client assertion and an access token alike.

Before, the last one won: ``{"alg":"none","alg":"ES256"}`` read as ES256, so that two
readers of one header could see two algorithms or two keys.
"""

import json
import time
import uuid
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc.jwk import ECKey

from onceonly.hub.kit import base64url
from onceonly.hub.kit.jws import peek_header_and_claims

from tests.hub.auth.test_auth_dpop import (
    ASSERTION_TYPE,
    CLIENT,
    World,
    ask,
    assert_resource_refused,
    bound_token,
    dpop_private,
    proof_claims,
    world,
)
from tests.hub_testing import problem_type

__all__ = ["dpop_private", "world"]  # the fixtures, for pytest


def es256_over(key: ECKey, header_text: str, claims: dict[str, Any]) -> str:
    """A compact JWS signed over ``header_text`` as it is written: no JOSE library writes
    a member twice."""
    text = (
        f"{base64url.encode(header_text.encode())}.{base64url.encode(json.dumps(claims).encode())}"
    )
    r, s = decode_dss_signature(
        key.get_op_key("sign").sign(text.encode(), ec.ECDSA(hashes.SHA256()))
    )
    return f"{text}.{base64url.encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def dpop_header(key: ECKey, *, twice: str) -> str:
    """A DPoP proof's header with the member ``twice`` written twice, the last as it
    should be."""
    jwk = json.dumps(key.as_dict(private=False))
    first = {"alg": '"none"', "jwk": json.dumps({"kty": "EC"}), "typ": '"JWT"'}[twice]
    return f'{{"{twice}":{first},"typ":"dpop+jwt","alg":"ES256","jwk":{jwk}}}'


@pytest.mark.parametrize("member", ["alg", "jwk", "typ"])
def test_peeking_refuses_a_header_member_named_twice(member: str) -> None:
    key = ECKey.generate_key("P-256")
    with pytest.raises(ValueError, match=f"duplicate key '{member}'"):
        peek_header_and_claims(es256_over(key, dpop_header(key, twice=member), {"jti": "j"}))


def test_peeking_refuses_a_member_named_twice_inside_the_headers_jwk() -> None:
    key = ECKey.generate_key("P-256")
    jwk = json.dumps(key.as_dict(private=False))
    header = f'{{"typ":"dpop+jwt","alg":"ES256","jwk":{jwk[:-1]},"x":"AAAA"}}}}'
    with pytest.raises(ValueError, match="duplicate key 'x'"):
        peek_header_and_claims(es256_over(key, header, {"jti": "j"}))


@pytest.mark.parametrize("member", ["alg", "jwk"])
def test_a_dpop_proof_naming_a_header_member_twice_is_refused_at_a_resource(
    world: World, dpop_private: ECKey, member: str
) -> None:
    token = bound_token(world)
    proof = es256_over(
        dpop_private, dpop_header(dpop_private, twice=member), proof_claims(world, token)
    )
    response = ask(world, {"Authorization": f"DPoP {token}", "DPoP": proof})
    assert_resource_refused(world, response, slug="invalid-dpop-proof", error="invalid_dpop_proof")
    assert f"duplicate key '{member}'" in response.json()["detail"]


def test_a_client_assertion_naming_alg_twice_is_refused(world: World) -> None:
    now = int(time.time())
    claims = {
        "iss": CLIENT,
        "sub": CLIENT,
        "aud": world.hub.settings.issuer,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    header = f'{{"alg":"none","alg":"ES256","kid":"{world.client_key.kid}"}}'
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": es256_over(world.client_key, header, claims),
    }
    proof = world.dpop.proof("POST", world.token_url)
    response = httpx.post(world.token_url, data=form, headers={"DPoP": proof})
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert "duplicate key 'alg'" in response.json()["error_description"]


def test_an_access_token_naming_kid_twice_is_refused(world: World) -> None:
    """Signed by the hub's own key over a header with ``kid`` twice: refused for the
    duplicate, though its signature holds."""
    signing = world.hub.keys.signing
    token = bound_token(world)
    claims = json.loads(base64url.decode(token.split(".")[1]))
    header = f'{{"typ":"at+jwt","alg":"ES256","kid":"another","kid":"{signing.kid}"}}'
    forged = es256_over(signing, header, claims)
    proof = world.dpop.proof("POST", world.query_url(), access_token=forged)
    response = ask(world, {"Authorization": f"DPoP {forged}", "DPoP": proof})
    assert response.status_code == 401, response.text
    assert problem_type(response) == "invalid-token"
    assert "duplicate key 'kid'" in response.json()["detail"]
