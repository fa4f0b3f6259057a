"""Fixtures for the adapters suite: real servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from joserfc.jwk import ECKey

from tests.adapters.adapter_testing import CLIENT_ID, HubDouble, serve


@pytest.fixture(scope="session")
def hub_server() -> Iterator[HubDouble]:
    double = HubDouble()
    with serve(double.app()) as url:
        double.url = url
        yield double


@pytest.fixture
def hub(hub_server: HubDouble) -> HubDouble:
    """The session's hub double, with fresh keys, clients, records and counters."""
    hub_server.reset()
    return hub_server


@pytest.fixture
def client_key(hub: HubDouble) -> ECKey:
    key = ECKey.generate_key("P-256", auto_kid=True)
    hub.clients[CLIENT_ID] = key
    return key
