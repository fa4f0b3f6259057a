"""The adapter's change publisher against a real hub that has replaced its client's key
(``onceonly client put`` with another JWKS): each attempt is a refused ``token.issue``
entry in the hub's audit log, so the publisher asks ever less often and says why once;
once the key is registered again it publishes and says so (decision 0062). On SQLite
and PostgreSQL, real servers on loopback."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from joserfc.jwk import ECKey

from onceonly.adapters import AsyncHubClient, public_jwks

from tests.adapters.test_adapters_events_publisher import EVENTS_LOGGER, lines, run_publisher
from tests.hub.exchange_world import OWNER, World, module_exchange_world
from tests.hub_testing import DATABASES, added_audit_entries

OWNER_CLIENT = f"{OWNER}-adapter"


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with module_exchange_world(request, tmp_path_factory) as built:
        yield built


def _put_client(world: World, key: ECKey) -> None:
    with world.hub.admin() as admin:
        admin.put_client(OWNER_CLIENT, department=OWNER, jwks=public_jwks(key))


def test_a_client_whose_key_the_hub_replaced_asks_ever_less_often_and_says_why_once(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = ECKey.generate_key("P-256", auto_kid=True)
    _put_client(world, ECKey.generate_key("P-256", auto_kid=True))  # not the adapter's key
    started, registered = time.monotonic(), []

    def registered_again_after_two_seconds() -> bool:
        if time.monotonic() - started > 2.0 and not registered:
            _put_client(world, key)
            registered.append(time.monotonic())
        return bool(lines(caplog, logging.INFO))  # publishing resumed

    with (
        caplog.at_level(logging.INFO, logger=EVENTS_LOGGER),
        added_audit_entries(world.hub, action="token.issue") as token_entries,
    ):
        store = run_publisher(
            lambda: AsyncHubClient(world.hub.url, client_id=OWNER_CLIENT, key=key, retries=0),
            tmp_path / "outbox.db",
            until=registered_again_after_two_seconds,
            within=10.0,
            interval=0.1,
            max_wait=0.4,
        )

    refused = [entry for entry in token_entries if entry["outcome"] == "refused"]
    # 0.1, 0.2, 0.4, 0.4, ...: about 6 in 2 s (about 20 at one a round)
    assert 3 <= len(refused) <= 8
    (failed,) = lines(caplog, logging.ERROR)
    assert failed.startswith(
        "publishing changes failed: AuthenticationFailed, status 401,"
        " problem type oauth-invalid-client (the hub refused this adapter's client"
    )
    assert "eyJ" not in caplog.text
    (resumed,) = lines(caplog, logging.INFO)
    assert resumed.startswith(f"publishing changes resumed after {len(refused)} failed attempts")
    assert store.pending_changes() == []
    store.close()
