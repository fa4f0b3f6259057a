"""A production hub never delivers an event to its own machine through a subscriber
adapter's name (decision 0071): ``vm`` is 127.0.0.1 in this machine's /etc/hosts, a
name registration takes (it is no local spelling). The delivery fails as to an
unreachable subscriber (``AdapterAddressRefused``, retried, then a dead letter) and the
server on loopback receives not one byte, TLS's ClientHello included; with
``adapters_on_loopback`` the same delivery goes through, TLS verified against the name.
"""

import ssl
from pathlib import Path

import pytest
import sqlalchemy as sa
from joserfc.jwk import ECKey

from onceonly.adapters import HubClient, public_jwks
from onceonly.hub.db import make_sync_engine

from tests.hub.exchange.test_adapter_address import (  # noqa: F401  # pki: a fixture
    ISSUER,
    _ToHub,
    pki,
    production_hub,
)
from tests.hub.exchange_world import ADDRESS, CONSUMER, OWNER, PURPOSE, SUBJECT
from tests.hub.kit.counting_server import CountingServer, loopback_name
from tests.hub_testing import CATALOGUE, RunningHub, audit_entries, wait_until


def _publish_to(hub: RunningHub, subscriber_url: str) -> None:
    """The catalogue, both departments' clients, the consumer's grant, its adapter URL
    (registration takes it) and subscription; then the owner publishes one change."""
    keys = {d: ECKey.generate_key("P-256", auto_kid=True) for d in (OWNER, CONSUMER)}
    with hub.admin() as admin:
        admin.import_catalogue(CATALOGUE)
        for department, key in keys.items():
            admin.put_client(f"{department}-adapter", department=department, jwks=public_jwks(key))
        admin.create_grant(consumer=CONSUMER, item=ADDRESS, purpose=PURPOSE, legal_basis="t")
        admin.put_department(CONSUMER, name="Social Welfare Board", adapter_url=subscriber_url)
    for department, act in ((CONSUMER, "subscribe"), (OWNER, "publish")):
        with HubClient(
            ISSUER,
            client_id=f"{department}-adapter",
            key=keys[department],
            retries=0,
            transport=_ToHub(hub.url),
        ) as client:
            if act == "subscribe":
                client.subscribe(ADDRESS)
            else:
                client.publish(ADDRESS, SUBJECT, kind="changed")


def _the_delivery(postgres_url: str) -> tuple[str, int, str | None]:
    engine = make_sync_engine(postgres_url)
    try:
        with engine.connect() as conn:
            query = "SELECT status, attempts, last_error FROM event_deliveries"
            status, attempts, last_error = conn.execute(sa.text(query)).one()
    finally:
        engine.dispose()
    return status, attempts, last_error


def _subscriber(files: dict[str, Path]) -> CountingServer:
    """A subscriber's adapter over TLS for the loopback names, answering 200."""
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(files["server"])
    return CountingServer(tls)


@pytest.mark.postgres
@pytest.mark.parametrize("adapters_on_loopback", [False, True])
def test_an_event_to_a_name_on_loopback_is_refused_without_a_byte_unless_allowed(
    tmp_path: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    pki: dict[str, Path],  # noqa: F811  # the fixture imported above
    adapters_on_loopback: bool,
) -> None:
    """Refused: retried as to an unreachable subscriber, then a dead letter, and the
    server received nothing. With ``adapters_on_loopback``: delivered."""
    server = _subscriber(pki)
    ended = "delivered" if adapters_on_loopback else "dead"
    try:
        with production_hub(
            tmp_path,
            postgres_url,
            monkeypatch,
            ca_file=pki["ca"],
            adapters_on_loopback=adapters_on_loopback,
            event_poll_interval="0.05",
            event_retry_base="0.05",
            event_max_attempts="2",
        ) as hub:
            _publish_to(hub, f"https://{loopback_name()}:{server.port}/")
            wait_until(lambda: _the_delivery(postgres_url)[0] == ended, what=ended)
            status, attempts, last_error = _the_delivery(postgres_url)
            entries = [e["entry"] for e in audit_entries(hub, action="event.deliver")]
        failed = [e["reason"] for e in entries if e["outcome"] == "failed"]
        if adapters_on_loopback:
            assert (status, last_error, failed) == ("delivered", None, [])
            assert server.received > 0
            return
        assert (status, attempts, last_error) == ("dead", 2, "AdapterAddressRefused")
        assert failed == ["delivery-failed", "dead-letter"]
        assert server.settled(2).connections == 2  # each attempt connected, was judged
        assert server.received == 0  # not a byte: no ClientHello, no token, no subject
    finally:
        server.close()
