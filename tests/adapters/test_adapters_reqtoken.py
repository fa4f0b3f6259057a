"""The request token check (docs/protocol.md §4) against the hub double's JWKS: what a
compact ES256 JWS must be, beyond the claims the provider tests cover over HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.hashes import SHA256
from joserfc.jwk import ECKey

from onceonly.adapters import AuthenticationFailed
from onceonly.adapters._hubkeys import HubDirectory
from onceonly.adapters._reqtoken import RequestClaims, RequestTokenVerifier

from tests.adapters.adapter_testing import OWNER, SUBJECT, HubDouble, sha256_b64url


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def verify(hub: HubDouble, *tokens: str) -> list[RequestClaims | str]:
    """Each token's claims, or the refusal's detail, through one verifier."""

    async def scenario() -> list[RequestClaims | str]:
        async with httpx.AsyncClient() as http:
            verifier = RequestTokenVerifier(HubDirectory(hub.url, http=http), audience=OWNER)
            outcomes: list[RequestClaims | str] = []
            for token in tokens:
                try:
                    outcomes.append(await verifier.verify(token))
                except AuthenticationFailed as refused:
                    outcomes.append(refused.detail)
            return outcomes

    return asyncio.run(scenario())


def resigned(hub: HubDouble, token: str, **header: Any) -> str:
    """``token`` with its header changed and signed again by the hub's key (by hand:
    joserfc refuses to write some of the headers these tests need)."""
    values = {"alg": "ES256", "kid": hub.keys[0].kid, "typ": "onceonly-req+jwt", **header}
    return resigned_as_written(hub, token, json.dumps(values))


def resigned_as_written(hub: HubDouble, token: str, header: str) -> str:
    """``token`` with the header ``header`` as written (a member twice, say), signed
    again by the hub's key."""
    _, payload, _ = token.split(".")
    key = hub.keys[0]
    signed = f"{b64(header.encode())}.{payload}"
    der = key.get_op_key("sign").sign(signed.encode(), ec.ECDSA(SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signed}.{b64(r.to_bytes(32) + s.to_bytes(32))}"


def test_accepts_a_hub_token_and_returns_its_claims(hub: HubDouble) -> None:
    (claims,) = verify(hub, hub.request_token(subject_pseudonym="ab" * 32))

    assert isinstance(claims, RequestClaims)
    assert (claims.subject_sha256, claims.subject_pseudonym) == (
        sha256_b64url(SUBJECT),
        "ab" * 32,
    )


def test_refuses_a_token_whose_payload_was_changed_after_signing(hub: HubDouble) -> None:
    header, _, signature = hub.request_token().split(".")
    forged = b64(json.dumps({"sub": "tax"}).encode())

    assert verify(hub, f"{header}.{forged}.{signature}") == [
        "the request token's signature is invalid"
    ]


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(lambda raw: raw[:-1], id="one-octet-short"),
        pytest.param(lambda raw: raw + b"\x00", id="one-octet-long"),
        pytest.param(lambda raw: bytes(64), id="zeros"),
        pytest.param(lambda raw: raw[32:] + raw[:32], id="r-and-s-swapped"),
    ],
)
def test_refuses_a_signature_that_is_not_the_tokens(hub: HubDouble, signature: Any) -> None:
    header, payload, raw = hub.request_token().split(".")
    altered = b64(signature(base64.urlsafe_b64decode(raw + "==")))

    assert verify(hub, f"{header}.{payload}.{altered}") == [
        "the request token's signature is invalid"
    ]


def test_refuses_a_der_encoded_signature(hub: HubDouble) -> None:
    """JWS carries R ‖ S (RFC 7518 §3.4), never the DER form that OpenSSL returns."""
    header, payload, raw = hub.request_token().split(".")
    octets = base64.urlsafe_b64decode(raw + "==")
    der = encode_dss_signature(int.from_bytes(octets[:32]), int.from_bytes(octets[32:]))
    assert decode_dss_signature(der)  # the same signature, in another form

    assert verify(hub, f"{header}.{payload}.{b64(der)}") == [
        "the request token's signature is invalid"
    ]


def test_refuses_a_padded_signature(hub: HubDouble) -> None:
    token = hub.request_token()

    assert verify(hub, token + "=") == ["the request token's signature is invalid"]


def test_refuses_a_signature_spelt_with_unused_bits_set(hub: HubDouble) -> None:
    """64 octets are 86 characters, the last carrying 4 bits that no octet uses (RFC
    4648 §3.5): set, they spell the very same R ‖ S, which a lenient reader accepts."""
    token = hub.request_token()
    signed, _, signature = token.rpartition(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(signature[-1]) | 0b0001]
    respelt = f"{signed}.{signature[:-1]}{last}"
    assert base64.urlsafe_b64decode(respelt.rpartition(".")[2] + "==") == (
        base64.urlsafe_b64decode(signature + "==")
    )

    outcomes = verify(hub, respelt, token)
    assert outcomes[0] == "the request token's signature is invalid"
    assert isinstance(outcomes[1], RequestClaims)  # the token as the hub spelt it holds


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        ("", "the request token is not a compact JWS"),
        ("a.b", "the request token is not a compact JWS"),
        ("a.b.c.d", "the request token is not a compact JWS"),
        ("ä.b.c", "the request token is not a compact JWS"),
        ("!!.b.c", "the request token's header is not JSON"),
        (b64(b"[1]") + ".b.c", "the request token's header is not a JSON object"),
        (b64(b"\xff") + ".b.c", "the request token's header is not JSON"),
    ],
)
def test_refuses_what_is_not_a_compact_jws(hub: HubDouble, token: str, detail: str) -> None:
    assert verify(hub, token) == [detail]


def test_refuses_a_token_naming_critical_extensions(hub: HubDouble) -> None:
    token = resigned(hub, hub.request_token(), crit=["exp"], exp=1)

    assert verify(hub, token) == ["the request token names critical extensions"]


def test_refuses_an_unencoded_payload_header_even_without_crit(hub: HubDouble) -> None:
    """RFC 7797's b64 must be named in crit; either way the adapter reads no such token."""
    token = resigned(hub, hub.request_token(), b64=False)

    assert verify(hub, token) == ["the request token names critical extensions"]


def test_refuses_a_member_named_twice_in_the_header_or_the_claims(hub: HubDouble) -> None:
    """As the hub refuses it in every JWS it receives (a review, helper-178): a reader
    that keeps the first of two members would read another token than one that keeps
    the last, and json.loads keeps the last."""
    token = hub.request_token()
    kid = hub.keys[0].kid
    twice_alg = f'{{"alg": "none", "alg": "ES256", "kid": "{kid}", "typ": "onceonly-req+jwt"}}'
    header, payload, _ = token.split(".")
    claims = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    twice_sub = claims[:-1] + ', "sub": "someone-else"}'

    assert verify(hub, resigned_as_written(hub, token, twice_alg)) == [
        "the request token's header is not JSON"
    ]
    again = resigned_as_written(
        hub,
        f"{header}.{b64(twice_sub.encode())}.x",
        json.dumps({"alg": "ES256", "kid": kid, "typ": "onceonly-req+jwt"}),
    )
    assert verify(hub, again) == ["the request token's payload is not JSON"]


def test_a_token_signed_again_by_the_hub_key_holds(hub: HubDouble) -> None:
    """The test's own signer is right: what it signs with the hub's header holds."""
    assert isinstance(verify(hub, resigned(hub, hub.request_token()))[0], RequestClaims)


@pytest.mark.parametrize(
    "header", [{"typ": "JWT"}, {"alg": "ES384"}, {"alg": "none"}, {"typ": None}]
)
def test_refuses_another_algorithm_or_type(hub: HubDouble, header: dict[str, Any]) -> None:
    assert verify(hub, resigned(hub, hub.request_token(), **header)) == [
        "the token must be ES256 onceonly-req+jwt"
    ]


def test_refuses_a_jwks_key_that_is_not_for_es256_signatures(hub: HubDouble) -> None:
    """A key the hub publishes for another use or curve never verifies a request token,
    even when its kid is the token's."""
    signer = hub.keys[0]
    wrong_use = ECKey.import_key(signer.as_dict(private=False), {"use": "enc"})
    p384 = ECKey.generate_key("P-384", {"kid": "p384"})
    hub.keys = [wrong_use, p384]
    p384_header = b64(b'{"alg":"ES256","kid":"p384","typ":"onceonly-req+jwt"}')
    _, payload, signature = hub.request_token(key=signer).split(".")
    tokens = [hub.request_token(key=signer), f"{p384_header}.{payload}.{signature}"]

    assert verify(hub, *tokens) == ["the request token's kid is not a hub key"] * 2


def test_uses_the_key_the_jwks_now_publishes_under_a_kid(hub: HubDouble) -> None:
    """The verifying key is cached per key object: a JWKS refetched with another key
    under the same kid is used at once, and tokens of the old key no longer hold."""
    old = hub.keys[0]
    new = ECKey.generate_key("P-256", {"kid": old.kid})
    before = hub.request_token()
    after = hub.request_token(key=new)

    async def scenario() -> list[bool]:
        clock = [0.0]
        async with httpx.AsyncClient() as http:
            directory = HubDirectory(hub.url, http=http, clock=lambda: clock[0])
            verifier = RequestTokenVerifier(directory, audience=OWNER)
            outcomes = [await held(verifier, before)]
            hub.keys = [new]
            clock[0] += 61  # the JWKS is refetched at a minute's age
            outcomes += [await held(verifier, hub.request_token(key=old))]
            outcomes += [await held(verifier, after)]
            return outcomes

    async def held(verifier: RequestTokenVerifier, token: str) -> bool:
        try:
            await verifier.verify(token)
        except AuthenticationFailed:
            return False
        return True

    assert asyncio.run(scenario()) == [True, False, True]


def test_reads_each_tokens_own_header_past_the_kept_few(hub: HubDouble) -> None:
    """Decoded headers are kept by their text; more distinct headers than are kept, and a
    header seen before with another signature, are each judged on their own."""
    tokens = [resigned(hub, hub.request_token(), n=number) for number in range(70)]
    tokens += [resigned(hub, hub.request_token(), n=0, typ="JWT")]

    outcomes = verify(hub, *tokens)

    assert all(isinstance(outcome, RequestClaims) for outcome in outcomes[:70])
    assert outcomes[70] == "the token must be ES256 onceonly-req+jwt"


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": 10**400},
        {"iat": -(10**400)},
        {"exp": 2**53 + 1},
        {"exp": float("inf")},
        {"iat": float("nan")},
    ],
)
def test_refuses_a_time_claim_past_what_a_float_holds_exactly(
    hub: HubDouble, claims: dict[str, Any]
) -> None:
    """10**400 overflowed float() (a 500, review 161); infinity and NaN compare oddly."""
    assert verify(hub, hub.request_token(**claims)) == [
        f"the request token's {next(iter(claims))} is out of bounds"
    ]
