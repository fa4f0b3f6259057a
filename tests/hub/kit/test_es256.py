"""ES256 straight through cryptography (onceonly.hub.kit.es256), held to joserfc."""

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from onceonly.hub.adapter_tokens import sign_hub_token
from onceonly.hub.kit import base64url, es256

KEY = ECKey.generate_key("P-256", auto_kid=True)
OTHER = ECKey.generate_key("P-256", auto_kid=True)


def _public(key: ECKey) -> ec.EllipticCurvePublicKey:
    public = key.get_op_key("verify")
    assert isinstance(public, ec.EllipticCurvePublicKey)
    return public


def _private(key: ECKey) -> ec.EllipticCurvePrivateKey:
    private = key.get_op_key("sign")
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    return private


def test_what_it_signs_joserfc_verifies() -> None:
    header = {"typ": "x+jwt", "alg": "ES256", "kid": KEY.kid}
    claims = {"sub": "social-welfare", "version": 2, "iss": "https://hub.example"}
    token = es256.sign(_private(KEY), header, claims)
    decoded = jwt.decode(token, KEY, algorithms=["ES256"])
    assert (dict(decoded.header), dict(decoded.claims)) == (header, claims)
    with pytest.raises(Exception, match="signature"):
        jwt.decode(token, OTHER, algorithms=["ES256"])


def test_what_joserfc_signs_holds_and_nothing_else() -> None:
    token = jws.serialize_compact({"alg": "ES256"}, b'{"a":1}', KEY, algorithms=["ES256"])
    assert es256.holds(_public(KEY), token)
    assert not es256.holds(_public(OTHER), token)
    head, payload, signature = token.split(".")
    raw = base64url.decode(signature)
    flipped = base64url.encode(raw[:-1] + bytes([raw[-1] ^ 1]))
    forged_payload = base64url.encode(b'{"a":2}')
    for bad in (
        f"{head}.{payload}.{flipped}",  # a bit of S changed
        f"{head}.{forged_payload}.{signature}",  # another payload
        f"{head}.{payload}.{base64url.encode(raw[:63])}",  # R||S one byte short
        f"{head}.{payload}.{base64url.encode(raw + b'x')}",  # one byte long
        f"{head}.{payload}.{signature}=",  # padded
        f"{head}.{payload}.{signature[:-1]}*",  # outside the alphabet
        f"{head}é.{payload}.{signature}",  # not ASCII
        f"{head}.{payload}.",  # no signature
        f"{head}.{payload}.{_respelt(signature)}",  # the same bytes, another spelling
    ):
        assert not es256.holds(_public(KEY), bad), bad


def _respelt(part: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    respelt = part[:-1] + alphabet[alphabet.index(part[-1]) ^ 1]
    assert base64.urlsafe_b64decode(respelt + "==") == base64url.decode(part)  # read leniently
    return respelt


def test_the_hub_signs_only_with_a_key_fit_for_es256() -> None:
    for unfit in ({"use": "enc"}, {"alg": "ES384"}, {"key_ops": ["verify"]}):
        key = ECKey.import_key({**KEY.as_dict(private=True), **unfit})
        with pytest.raises(JoseError):
            sign_hub_token(key, typ="onceonly-req+jwt", claims={}, now=0, lifetime=60)
    assert sign_hub_token(KEY, typ="onceonly-req+jwt", claims={}, now=0, lifetime=60)


def test_only_a_p256_key_signs() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="P-256"):
        es256.sign(p384, {"alg": "ES256"}, {})
