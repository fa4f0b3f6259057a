"""The command line talks to a hub served over TLS: it trusts the CA file it is given
(``--ca-file``, ``$ONCEONLY_CA_FILE``) and presents a client certificate when the
server asks for one (``--client-cert``/``--client-key``) (issue 15)."""

import io
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from onceonly.hub.app import create_app
from onceonly.hub.cli import main
from onceonly.hub.cli.servers import ServerTLS, loopback_socket, serve_in_thread
from onceonly.hub.config import Settings
from onceonly.hub.keys import HubKeys

from tests.hub_testing import migrated_sqlite


@dataclass(frozen=True)
class TlsHub:
    url: str
    ca_file: Path
    admin_token: str
    client_cert: Path  # issued by the same CA, with its key in the same file


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_hub(
    ca: trustme.CA, directory: Path, template: Path, *, ask_for_client_cert: bool
) -> Iterator[TlsHub]:
    server_cert = ca.issue_cert("127.0.0.1")
    server_pem, key_pem, ca_file = (directory / n for n in ("hub.pem", "hub.key", "ca.pem"))
    server_cert.cert_chain_pems[0].write_to_path(str(server_pem))
    server_cert.private_key_pem.write_to_path(str(key_pem))
    ca.cert_pem.write_to_path(str(ca_file))
    client_pem = directory / "operator.pem"
    ca.issue_cert("operator@hub.example.gov").private_key_and_cert_chain_pem.write_to_path(
        str(client_pem)
    )
    sock = loopback_socket()
    settings = Settings(
        data_dir=directory,
        database_url=migrated_sqlite(template, directory),
        issuer=f"https://127.0.0.1:{sock.getsockname()[1]}",
        log_json=False,
    )
    keys = HubKeys.load(settings.keys_dir, create=True)
    tls = ServerTLS(server_pem, key_pem, client_ca=ca_file if ask_for_client_cert else None)
    with serve_in_thread(create_app(settings, keys=keys), sock, tls=tls) as url:
        yield TlsHub(url, ca_file, keys.admin_token, client_pem)


@pytest.fixture(scope="module")
def hub(
    ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[TlsHub]:
    yield from tls_hub(
        ca, tmp_path_factory.mktemp("tls"), sqlite_template, ask_for_client_cert=False
    )


@pytest.fixture(scope="module")
def mtls_hub(
    ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[TlsHub]:
    yield from tls_hub(
        ca, tmp_path_factory.mktemp("mtls"), sqlite_template, ask_for_client_cert=True
    )


@pytest.fixture(autouse=True)
def no_tls_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("CA_FILE", "CLIENT_CERT", "CLIENT_KEY", "HUB_URL", "TOKEN", "ADMIN_TOKEN"):
        monkeypatch.delenv(f"ONCEONLY_{name}", raising=False)
    monkeypatch.setenv("ONCEONLY_SESSION_FILE", str(tmp_path / "session.json"))
    monkeypatch.setenv("ONCEONLY_DATA_DIR", str(tmp_path / "elsewhere"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, list[str]]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err.splitlines()


def test_without_the_ca_file_the_hub_is_not_trusted_in_one_line(
    hub: TlsHub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONCEONLY_TOKEN", hub.admin_token)
    status, out, err = run(capsys, "items", "list", "--hub", hub.url)
    assert (status, out) == (2, "")
    assert err == [
        f"cannot reach the hub at {hub.url}: its TLS certificate is not trusted"
        " (unable to get local issuer certificate): give the certificate authority that"
        " issued it with --ca-file or ONCEONLY_CA_FILE"
    ]


def test_with_the_ca_file_the_command_works(
    hub: TlsHub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONCEONLY_TOKEN", hub.admin_token)
    status, out, err = run(capsys, "items", "list", "--hub", hub.url, "--ca-file", str(hub.ca_file))
    assert (status, err) == (0, [])
    assert json.loads(out) == []


def test_the_ca_file_from_the_environment(
    hub: TlsHub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONCEONLY_TOKEN", hub.admin_token)
    monkeypatch.setenv("ONCEONLY_CA_FILE", str(hub.ca_file))
    monkeypatch.setenv("ONCEONLY_HUB_URL", hub.url)
    status, out, _ = run(capsys, "access", "purposes")
    assert status == 0
    assert "benefit-eligibility" in out


def test_sign_in_over_tls(
    hub: TlsHub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONCEONLY_CA_FILE", str(hub.ca_file))
    monkeypatch.setattr("sys.stdin", io.StringIO("wrong password\n"))
    status, _, err = run(
        capsys, "login", "--hub", hub.url, "--username", "nobody", "--password-stdin"
    )
    assert status == 1
    assert len(err) == 1
    assert err[0].startswith("refused: HTTP 4")


def test_audit_verify_trusts_the_ca_file(
    hub: TlsHub, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ca = str(hub.ca_file)
    key = httpx.get(f"{hub.url}/v1/audit/verifier-key", verify=_context(hub.ca_file)).text.strip()
    state = str(tmp_path / "state.json")
    argv = ["audit", "verify", "--hub", hub.url, "--key", key, "--state", state]
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert "CERTIFICATE_VERIFY_FAILED" in err[0]
    status, out, err = run(capsys, *argv, "--ca-file", ca)
    assert (status, err) == (0, [])
    assert "signature good" in out


def test_a_client_certificate_is_presented_when_the_hub_asks(
    mtls_hub: TlsHub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONCEONLY_TOKEN", mtls_hub.admin_token)
    argv = ["items", "list", "--hub", mtls_hub.url, "--ca-file", str(mtls_hub.ca_file)]
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert len(err) == 1
    assert err[0].startswith(f"cannot reach the hub at {mtls_hub.url}: ")
    assert err[0].endswith(
        "(if the hub asks for a client certificate: --client-cert, --client-key)"
    )
    status, out, err = run(capsys, *argv, "--client-cert", str(mtls_hub.client_cert))
    assert (status, err) == (0, [])
    assert json.loads(out) == []
    monkeypatch.setenv("ONCEONLY_CLIENT_CERT", str(mtls_hub.client_cert))
    assert run(capsys, *argv)[0] == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--ca-file", "/nonexistent/ca.pem"], "cannot use the CA file /nonexistent/ca.pem: "),
        (["--client-key", "/some/key.pem"], "--client-key needs --client-cert"),
        (["--client-cert", "/nonexistent/me.pem"], "cannot use the client certificate"),
    ],
)
def test_tls_options_that_cannot_be_used_are_one_line(
    hub: TlsHub, options: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONCEONLY_TOKEN", hub.admin_token)
    with pytest.raises(SystemExit) as ended:
        main(["items", "list", "--hub", hub.url, *options])
    assert str(ended.value.code).startswith(message)
    assert "\n" not in str(ended.value.code)


def _context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))
