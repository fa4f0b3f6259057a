"""A production hub never talks to its own machine through an adapter's name (decision
0071). ``vm`` is 127.0.0.1 in this machine's /etc/hosts: a name the spelling check
cannot see through, as a department's DNS or a rebinding name could answer. Registered
as an owner's adapter URL (taken: it is no local spelling), a record query to it is an
unavailable owner and the server on loopback receives not one byte, TLS's ClientHello
included; with ``adapters_on_loopback`` the same call goes through, TLS verified against
the name. Real hubs (production needs PostgreSQL), a real adapter, loopback sockets.
"""

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import trustme
from joserfc.jwk import ECKey

from onceonly.adapters import (
    AdapterConfig,
    HubClient,
    OnceonlyError,
    RecordStore,
    StoreItem,
    create_provider_app,
    public_jwks,
)
from onceonly.hub.app import create_app
from onceonly.hub.cli import main
from onceonly.hub.cli.servers import ServerTLS, loopback_socket, serve_in_thread
from onceonly.hub.config import Settings
from onceonly.hub.keys import HubKeys

from tests.hub.exchange_world import (
    ADDRESS,
    ADDRESS_RECORD,
    CONSUMER,
    CONSUMER_CLIENT,
    OWNER,
    PURPOSE,
    SUBJECT,
)
from tests.hub.kit.counting_server import CountingServer, loopback_name
from tests.hub_testing import CATALOGUE, RunningHub, audit_entries, empty_postgres

ISSUER = "https://hub.example.gov"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A department's CA (the hub's adapter_ca_file) and a server certificate for the
    loopback names."""
    ca, directory = trustme.CA(), tmp_path_factory.mktemp("pki")
    files = {name: directory / f"{name}.pem" for name in ("ca", "server", "key")}
    ca.cert_pem.write_to_path(str(files["ca"]))
    server = ca.issue_cert("vm", "runsc")
    server.private_key_and_cert_chain_pem.write_to_path(str(files["server"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    return files


@contextmanager
def production_hub(
    tmp_path: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    ca_file: Path,
    adapters_on_loopback: bool,
    **env: str,
) -> Iterator[RunningHub]:
    """A production hub as an operator starts one (keys init, PostgreSQL), trusting the
    department's CA; ``env``: more settings, as ONCEONLY_<NAME> variables."""
    empty_postgres(postgres_url)
    monkeypatch.setenv("ONCEONLY_DATA_DIR", str(tmp_path / "hub"))
    monkeypatch.setenv("ONCEONLY_MODE", "production")
    monkeypatch.setenv("ONCEONLY_ISSUER", ISSUER)
    monkeypatch.setenv("ONCEONLY_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ONCEONLY_AUDIT_ORIGIN", "hub.example.gov/audit")
    monkeypatch.setenv("ONCEONLY_ADAPTER_CA_FILE", str(ca_file))
    monkeypatch.setenv("ONCEONLY_ADAPTERS_ON_LOOPBACK", "true" if adapters_on_loopback else "false")
    for name, value in env.items():
        monkeypatch.setenv(f"ONCEONLY_{name.upper()}", value)
    assert main(["keys", "init"]) == 0
    settings = Settings()
    assert settings.is_production
    assert settings.adapters_on_loopback is adapters_on_loopback
    keys = HubKeys.load(settings.keys_dir, create=False)
    with serve_in_thread(create_app(settings, keys=keys), loopback_socket()) as url:
        yield RunningHub(url=url, settings=settings, keys=keys)


class _ToHub(httpx.BaseTransport):
    """The SDK's requests for the hub's https:// issuer, sent to the hub on loopback (its
    DPoP proofs name the issuer's URLs, as behind the operator's TLS proxy)."""

    def __init__(self, hub_url: str) -> None:
        self._hub = httpx.URL(hub_url)
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(
            scheme=self._hub.scheme, host=self._hub.host, port=self._hub.port
        )
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def _world(hub: RunningHub, adapter_url: str) -> ECKey:
    """The catalogue, the owner's adapter URL (registration takes it), the consumer's
    client (its key returned) and its grant."""
    with hub.admin() as admin:
        admin.import_catalogue(CATALOGUE)
        admin.put_department(OWNER, name="Civil Registry Office", adapter_url=adapter_url)
        key = ECKey.generate_key("P-256", auto_kid=True)
        admin.put_client(CONSUMER_CLIENT, department=CONSUMER, jwks=public_jwks(key))
        admin.create_grant(consumer=CONSUMER, item=ADDRESS, purpose=PURPOSE, legal_basis="t")
    return key


def _fetch(hub: RunningHub, key: ECKey) -> dict[str, object]:
    with HubClient(
        ISSUER, client_id=CONSUMER_CLIENT, key=key, retries=0, transport=_ToHub(hub.url)
    ) as client:
        return dict(client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE).record)


@pytest.mark.postgres
def test_a_record_query_to_a_name_on_loopback_sends_no_byte(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch, pki: dict[str, Path]
) -> None:
    name = loopback_name()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki["server"])
    server = CountingServer(tls)  # would answer, over TLS for the name, if it were asked
    try:
        with production_hub(
            tmp_path, postgres_url, monkeypatch, ca_file=pki["ca"], adapters_on_loopback=False
        ) as hub:
            key = _world(hub, f"https://{name}:{server.port}/")
            for _ in range(2):  # a refused connection is not kept: the next is judged too
                with pytest.raises(OnceonlyError) as refused:
                    _fetch(hub, key)
                assert refused.value.status == 503
                assert str(refused.value.problem_type).endswith("owner-unavailable")
            queries = [e["entry"] for e in audit_entries(hub, action="record.query")]
            assert [(e["outcome"], e["reason"]) for e in queries] == [
                ("failed", "owner-unavailable")
            ] * 2
        assert server.settled(2).connections == 2  # the hub connected, judged, closed
        assert server.received == 0  # not a byte: no ClientHello, no token, no subject
    finally:
        server.close()


@contextmanager
def owner_adapter(tmp_path: Path, pki: dict[str, Path], *, hub_url: str) -> Iterator[int]:
    """The owner's adapter over TLS (its certificate for the loopback names): its port."""
    config = AdapterConfig(
        department=OWNER, hub_url=hub_url, data_dir=tmp_path / "owner", items={ADDRESS: StoreItem()}
    )
    with RecordStore(config.store_path) as store:
        store.put(ADDRESS, SUBJECT, ADDRESS_RECORD)
    tls = ServerTLS(pki["server"], pki["key"])
    with serve_in_thread(create_provider_app(config), loopback_socket(), tls=tls) as url:
        yield httpx.URL(url).port or 443


@pytest.mark.postgres
def test_with_adapters_on_loopback_the_query_goes_through(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch, pki: dict[str, Path]
) -> None:
    name = loopback_name()
    with production_hub(
        tmp_path, postgres_url, monkeypatch, ca_file=pki["ca"], adapters_on_loopback=True
    ) as hub:
        with owner_adapter(tmp_path, pki, hub_url=hub.url) as port:
            key = _world(hub, f"https://{name}:{port}/")
            assert _fetch(hub, key)["city"] == ADDRESS_RECORD["city"]
