"""A hub killed with SIGKILL in the middle of a burst loses nothing it answered.

The hub runs as its own process (``onceonly serve``) on SQLite or PostgreSQL; the
owner's adapter and the consumers run here. After the kill, the restarted hub's
log holds an entry, with the receipt's leaf hash, for every request that got an
answer, its indexes are still dense, and ``onceonly audit verify --full`` accepts
the whole log against the hub's published key.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
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
from onceonly.hub.cli import main
from onceonly.hub.cli.admin_client import AdminClient
from onceonly.hub.cli.servers import loopback_socket

from tests.hub_testing import load_item, serve

ADDRESS = "person.residential-address"
RECORD = {"street": "Pikk 1", "city": "Tallinn", "postal_code": "10123", "country": "ND"}
ROOT = Path(__file__).resolve().parent.parent


def _start_hub(data_dir: Path, database_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ONCEONLY_DATA_DIR": str(data_dir),
        "ONCEONLY_DATABASE_URL": database_url,
        "ONCEONLY_LOG_LEVEL": "WARNING",
        # The lowest argon2id cost, as every test hub (tests/README.md): the hub hashes
        # once at each start, for unknown accounts, and no one signs in here.
        "ONCEONLY_PASSWORD_TIME_COST": "1",
        "ONCEONLY_PASSWORD_MEMORY_KIB": "64",
    }
    hub = subprocess.Popen(
        [sys.executable, "-m", "onceonly.hub", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return hub
        except httpx.TransportError:
            pass
        assert hub.poll() is None, "the hub exited at start-up"
        assert time.monotonic() < deadline, "the hub did not start"
        time.sleep(0.1)


def _burst(
    url: str, key: ECKey, answers: list[tuple[str, int, str]], stop: threading.Event
) -> None:
    with HubClient(url, client_id="social-welfare-adapter", key=key, retries=0) as client:
        while not stop.is_set():
            try:
                result = client.fetch(ADDRESS, "38001085718", purpose="benefit-eligibility")
            except OnceonlyError:
                return
            answers.append(
                (result.request_id or "", result.receipt.index, result.receipt.leaf_hash)
            )


def test_sigkill_during_a_burst_loses_no_answered_entry(database_url: str, tmp_path: Path) -> None:
    with loopback_socket() as probe:  # a free port for the hub process
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    hub = _start_hub(tmp_path / "hub", database_url, port)
    key = ECKey.generate_key("P-256", auto_kid=True)
    config = AdapterConfig(
        department="civil-registry",
        hub_url=url,
        data_dir=tmp_path / "owner",
        items={ADDRESS: StoreItem()},
    )
    with RecordStore(config.store_path) as store:
        store.put(ADDRESS, "38001085718", RECORD)
    answers: list[tuple[str, int, str]] = []
    token = (tmp_path / "hub" / "keys" / "admin-token").read_text().strip()
    try:
        with serve(create_provider_app(config)) as owner, AdminClient(url, token) as admin:
            # Only what the burst asks for: the whole catalogue (17 items, each with its
            # audit entries) cost ~1.5 s a run and proved nothing more here.
            admin.put_department("social-welfare", name="Social Welfare")
            admin.put_department("civil-registry", name="Civil Registry", adapter_url=owner)
            admin.put_item(load_item(ADDRESS))
            admin.put_client(
                "social-welfare-adapter", department="social-welfare", jwks=public_jwks(key)
            )
            admin.create_grant(
                consumer="social-welfare",
                item=ADDRESS,
                purpose="benefit-eligibility",
                legal_basis="t",
            )
            stop = threading.Event()
            workers = [
                threading.Thread(target=_burst, args=(url, key, answers, stop)) for _ in range(8)
            ]
            for worker in workers:
                worker.start()
            deadline = time.monotonic() + 30
            while len(answers) < 40 and time.monotonic() < deadline:
                time.sleep(0.01)
            hub.send_signal(signal.SIGKILL)
            hub.wait(timeout=10)
            stop.set()
            for worker in workers:
                worker.join(timeout=30)
            assert len(answers) >= 40, "the burst did not get going"
            hub = _start_hub(tmp_path / "hub", database_url, port)
            auditor = {"Authorization": f"Bearer {token}"}  # break-glass reads as an auditor
            with httpx.Client(base_url=url, headers=auditor) as http:
                for request_id, index, leaf_hash in answers:
                    stored = http.get(f"/v1/audit/entries/{index}").json()
                    assert stored["leaf_hash"] == leaf_hash
                    assert stored["entry"]["request_id"] == request_id
                last = max(index for _, index, _ in answers)
                for index in range(last + 1):  # dense: no gap below the last answered entry
                    assert http.get(f"/v1/audit/entries/{index}").status_code == 200
                key = http.get("/v1/audit/verifier-key").text.strip()
            verify = ["audit", "verify", "--hub", url, "--key", key, "--full"]
            assert main([*verify, "--state", str(tmp_path / "auditor.json")]) == 0
            # and the operator's check of the stored log: its tree, each entry's index
            # columns against its leaf (sealed subjects included), the report's roll-ups
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("ONCEONLY_DATABASE_URL", database_url)
                patch.setenv("ONCEONLY_DATA_DIR", str(tmp_path / "hub"))
                patch.delenv("ONCEONLY_CONFIG", raising=False)
                assert main(["audit", "check-nodes"]) == 0
    finally:
        hub.kill()
        hub.wait(timeout=10)
