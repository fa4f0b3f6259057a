"""Client certificates forwarded by the TLS-terminating proxy (RFC 8705). No I/O.

The proxy verifies the TLS handshake and passes the client's certificate on in a
header (nginx: ``$ssl_client_escaped_cert``, URL-encoded PEM). The hub trusts the
header only when ``tls_client_cert_header`` is configured, which an operator does
only behind a proxy that always overwrites it.
"""

import hashlib
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc.jwk import import_key

from onceonly.hub.kit import base64url

MAX_CERTIFICATE_BYTES = 16 * 1024


class CertificateError(ValueError):
    """The forwarded certificate cannot be read."""


def parse_forwarded(value: str) -> x509.Certificate:
    """The certificate in a URL-encoded PEM header value."""
    if len(value) > MAX_CERTIFICATE_BYTES:
        raise CertificateError("the client certificate is too large")
    try:
        return x509.load_pem_x509_certificate(unquote(value).encode("ascii"))
    except (ValueError, UnicodeError):
        raise CertificateError("the client certificate is not a PEM certificate") from None


def x5t_s256(certificate: x509.Certificate) -> str:
    """base64url SHA-256 of the DER certificate: ``cnf.x5t#S256`` (RFC 8705 §3.1)."""
    digest = hashlib.sha256(certificate.public_bytes(Encoding.DER)).digest()
    return base64url.encode(digest)


def public_key_thumbprint(certificate: x509.Certificate) -> str:
    """The RFC 7638 thumbprint of the certificate's public key, to match a registered JWK
    (RFC 8705 §2.2: the self-signed certificate holds a key the client registered)."""
    pem = certificate.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    for kind in ("EC", "OKP", "RSA"):
        try:
            return str(import_key(pem, kind).thumbprint())
        except (ValueError, TypeError):
            continue
    raise CertificateError("the client certificate's key type is not supported")
