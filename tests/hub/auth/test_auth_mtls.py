"""Mutual-TLS client authentication and certificate-bound tokens (RFC 8705), with the
certificate forwarded by a TLS proxy as nginx's ``$ssl_client_escaped_cert`` does."""

import datetime
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joserfc import jwt
from joserfc.jwk import ECKey

from onceonly.adapters import public_jwks

from tests.hub.exchange_world import (
    ADDRESS,
    CONSUMER_CLIENT,
    PURPOSE,
    SUBJECT,
    World,
    exchange_world,
    module_exchange_world,
)
from tests.hub_testing import DATABASES, audit_entry_for, problem_type

HEADER = "X-Client-Cert"


def self_signed(private: ec.EllipticCurvePrivateKey) -> str:
    """A self-signed certificate over ``private``, URL-encoded PEM (the proxy's header)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CONSUMER_CLIENT)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    return quote(certificate.public_bytes(serialization.Encoding.PEM).decode(), safe="")


def joserfc_key(private: ec.EllipticCurvePrivateKey) -> ECKey:
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key = ECKey.import_key(pem)
    key.ensure_kid()
    return key


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """One world per module and database; every test registers its own certificate key
    for the consumer's client (``certificate_key``) and finds its entries by request id."""
    with module_exchange_world(request, tmp_path_factory, tls_client_cert_header=HEADER) as built:
        yield built


@pytest.fixture
def certificate_key(world: World) -> ec.EllipticCurvePrivateKey:
    """The client's key, registered as its JWKS and certified by itself."""
    private = ec.generate_private_key(ec.SECP256R1())
    with world.hub.admin() as admin:
        admin.put_client(
            CONSUMER_CLIENT, department="social-welfare", jwks=public_jwks(joserfc_key(private))
        )
    return private


def ask_token(world: World, certificate: str | None) -> httpx.Response:
    headers = {HEADER: certificate} if certificate else {}
    form = {"grant_type": "client_credentials", "client_id": CONSUMER_CLIENT}
    return httpx.post(f"{world.hub.url}/oauth/token", data=form, headers=headers)


def query(world: World, token: str, certificate: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if certificate:
        headers[HEADER] = certificate
    url = f"{world.hub.url}/v1/items/{ADDRESS}/records/query"
    return httpx.post(url, json={"subject": SUBJECT, "purpose": PURPOSE}, headers=headers)


def test_certificate_authenticates_and_binds_the_token(
    world: World, certificate_key: ec.EllipticCurvePrivateKey
) -> None:
    certificate = self_signed(certificate_key)
    response = ask_token(world, certificate)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    claims = jwt.decode(body["access_token"], world.hub.keys.signing).claims
    assert set(claims["cnf"]) == {"x5t#S256"}
    assert query(world, body["access_token"], certificate).status_code == 200


@pytest.mark.parametrize("presented", ["none", "another"])
def test_certificate_bound_token_is_useless_without_its_certificate(
    world: World, certificate_key: ec.EllipticCurvePrivateKey, presented: str
) -> None:
    token = ask_token(world, self_signed(certificate_key)).json()["access_token"]
    other = self_signed(certificate_key) if presented == "another" else None  # new serial
    response = query(world, token, other)
    assert response.status_code == 401
    assert problem_type(response) == "invalid-token"
    entry = audit_entry_for(world.hub, response, action="record.query")
    assert entry["reason"] == "invalid-token"


def test_a_forged_token_sent_as_bearer_is_challenged_bearer_where_certificates_bind(
    world: World, certificate_key: ec.EllipticCurvePrivateKey
) -> None:
    """Certificate-bound tokens are Bearer tokens (RFC 8705): a hub that binds them
    challenges a token that does not verify with the scheme it came in, as it does one
    shown with another certificate (helper-143: it said DPoP, which such a client
    cannot use)."""
    token = ask_token(world, self_signed(certificate_key)).json()["access_token"]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for presented in (forged, token):
        response = query(world, presented, self_signed(certificate_key))
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer "), response.headers
    for authorization in (None, "Basic eDp5", "Bearer"):  # none, or none usable (helper-144)
        headers = {"Authorization": authorization} if authorization else {}
        url = f"{world.hub.url}/v1/items/{ADDRESS}/records/query"
        response = httpx.post(url, json={"subject": SUBJECT, "purpose": PURPOSE}, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer "), response.headers


@pytest.mark.parametrize("certificate", ["unregistered-key", "garbage", "none"])
def test_bad_certificate_is_invalid_client(
    world: World, certificate_key: ec.EllipticCurvePrivateKey, certificate: str
) -> None:
    value = {
        "unregistered-key": self_signed(ec.generate_private_key(ec.SECP256R1())),
        "garbage": quote("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----"),
        "none": None,
    }[certificate]
    response = ask_token(world, value)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_metadata_announces_certificate_authentication(world: World) -> None:
    metadata = httpx.get(f"{world.hub.url}/.well-known/oauth-authorization-server").json()
    assert "self_signed_tls_client_auth" in metadata["token_endpoint_auth_methods_supported"]
    assert metadata["tls_client_certificate_bound_access_tokens"] is True


def test_certificate_header_is_ignored_unless_configured(database_url: str, tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    with exchange_world(database_url=database_url, tmp_path=tmp_path) as world:
        with world.hub.admin() as admin:
            admin.put_client(
                CONSUMER_CLIENT, department="social-welfare", jwks=public_jwks(joserfc_key(private))
            )
        response = ask_token(world, self_signed(private))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
