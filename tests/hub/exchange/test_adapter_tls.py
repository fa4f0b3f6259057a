"""The hub calls an owner's adapter over HTTPS under a department's own CA, with mutual
TLS as the option (issue 15): ``adapter_ca_file`` adds the CA the hub trusts, and
``adapter_client_cert_file``/``adapter_client_key_file`` are the certificate it shows
an adapter that asks for one. Real TLS on loopback (trustme certificates)."""

import ssl
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

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
from onceonly.hub.cli import startup
from onceonly.hub.cli.servers import ServerTLS, loopback_socket, serve_in_thread
from onceonly.hub.config import Settings
from onceonly.hub.runtime import outgoing_tls

from tests.hub.exchange_world import (
    ADDRESS,
    ADDRESS_RECORD,
    CONSUMER,
    CONSUMER_CLIENT,
    OWNER,
    PURPOSE,
    SUBJECT,
)
from tests.hub_testing import CATALOGUE, RunningHub, running_hub


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A department's CA: the adapter's server certificate and the hub's client one."""
    ca, directory = trustme.CA(), tmp_path_factory.mktemp("pki")
    files = {name: directory / f"{name}.pem" for name in ("ca", "server", "key", "hub")}
    ca.cert_pem.write_to_path(str(files["ca"]))
    server = ca.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(files["server"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    ca.issue_cert("hub.example.gov").private_key_and_cert_chain_pem.write_to_path(str(files["hub"]))
    return files


@contextmanager
def owner_behind_tls(
    tmp_path: Path, pki: dict[str, Path], *, hub_url: str, mutual: bool
) -> Iterator[str]:
    config = AdapterConfig(
        department=OWNER,
        hub_url=hub_url,
        data_dir=tmp_path / "owner",
        items={ADDRESS: StoreItem()},
    )
    with RecordStore(config.store_path) as store:
        store.put(ADDRESS, SUBJECT, ADDRESS_RECORD)
    tls = ServerTLS(pki["server"], pki["key"], client_ca=pki["ca"] if mutual else None)
    with serve_in_thread(create_provider_app(config), loopback_socket(), tls=tls) as url:
        yield url


def _fetch(hub_url: str, key: ECKey) -> dict[str, object]:
    with HubClient(hub_url, client_id=CONSUMER_CLIENT, key=key, retries=0) as client:
        return dict(client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE).record)


@pytest.mark.parametrize("with_certificate", [True, False])
def test_an_adapter_asking_for_the_hubs_certificate(
    tmp_path: Path, database_url: str, pki: dict[str, Path], with_certificate: bool
) -> None:
    settings: dict[str, object] = {"adapter_ca_file": pki["ca"]}
    if with_certificate:
        settings |= {"adapter_client_cert_file": pki["hub"], "adapter_client_key_file": pki["hub"]}
    # The hub stops before the adapter: its pooled TLS connection to the adapter is
    # closed by the hub's shutdown, not left to the adapter's.
    with ExitStack() as adapter_side:
        with running_hub(database_url=database_url, data_dir=tmp_path / "hub", **settings) as hub:
            key = _world(hub)
            owner = adapter_side.enter_context(
                owner_behind_tls(tmp_path, pki, hub_url=hub.url, mutual=True)
            )
            assert owner.startswith("https://")
            with hub.admin() as admin:
                admin.put_department(OWNER, name="Civil Registry Office", adapter_url=owner)
            if with_certificate:
                assert _fetch(hub.url, key)["city"] == ADDRESS_RECORD["city"]
            else:  # the adapter refuses the handshake: the owner is unavailable
                with pytest.raises(OnceonlyError) as refused:
                    _fetch(hub.url, key)
                assert refused.value.status == 503
                assert str(refused.value.problem_type).endswith("owner-unavailable")


def _world(hub: RunningHub) -> ECKey:
    """The catalogue, the consumer's client (its key returned) and its grant."""
    with hub.admin() as admin:
        admin.import_catalogue(CATALOGUE)
        key = ECKey.generate_key("P-256", auto_kid=True)
        admin.put_client(CONSUMER_CLIENT, department=CONSUMER, jwks=public_jwks(key))
        admin.create_grant(consumer=CONSUMER, item=ADDRESS, purpose=PURPOSE, legal_basis="t")
    return key


def test_without_the_departments_ca_the_hub_does_not_trust_its_adapter(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    """The department's CA is trusted only when configured: the same adapter, a hub
    without adapter_ca_file, is an unavailable owner (never an unverified call)."""
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    with ExitStack() as adapter_side:
        with running_hub(database_url=url, data_dir=tmp_path / "hub") as hub:
            key = _world(hub)
            owner = adapter_side.enter_context(
                owner_behind_tls(tmp_path, pki, hub_url=hub.url, mutual=False)
            )
            with hub.admin() as admin:
                admin.put_department(OWNER, name="Civil Registry Office", adapter_url=owner)
            with pytest.raises(OnceonlyError) as refused:
                _fetch(hub.url, key)
            assert refused.value.status == 503


def test_a_client_certificate_needs_its_key_and_files_that_load(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    with pytest.raises(ValueError, match="go together"):
        Settings(data_dir=tmp_path, adapter_client_cert_file=pki["hub"])
    assert outgoing_tls(Settings(data_dir=tmp_path)) is True  # httpx's own default
    broken = tmp_path / "broken.pem"
    broken.write_text("not a certificate")
    with pytest.raises(ssl.SSLError):
        outgoing_tls(
            Settings(
                data_dir=tmp_path, adapter_client_cert_file=broken, adapter_client_key_file=broken
            )
        )
    problems = startup.check(
        Settings(data_dir=tmp_path, adapter_client_cert_file=broken, adapter_client_key_file=broken)
    ).problems
    assert [p for p in problems if p.startswith("the hub's TLS towards adapters does not load")]
