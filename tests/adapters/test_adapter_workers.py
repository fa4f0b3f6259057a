"""``onceonly adapter serve --workers N``: several processes answer on one port and
share the data_dir's store (the served-log, spent request tokens)."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from onceonly.adapters import RecordStore, load_config

from tests.adapters.adapter_testing import (
    CONSUMER,
    ITEM,
    PURPOSE,
    RECORD,
    SUBJECT,
    HubDouble,
    write_config,
)

BODY = {"subject": SUBJECT, "purpose": PURPOSE, "consumer": CONSUMER, "version": 1}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def _open_under(pid: int, path: Path) -> list[str]:
    """The files of process ``pid`` open at ``path`` or beside it (SQLite's -wal, -shm)."""
    prefix = str(path.resolve())
    targets = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:
            continue
    return [target for target in targets if target.startswith(prefix)]


def _statuses(url: str, hub: HubDouble, attempts: int) -> list[int]:
    """Query ``attempts`` times with fresh tokens, each on a new connection (which of
    the workers accepts it is the kernel's choice); the status codes."""
    statuses = []
    for _ in range(attempts):
        headers = {"Authorization": f"Bearer {hub.request_token()}"}
        with httpx.Client() as http:  # a new connection: the kernel picks a worker
            answer = http.post(f"{url}/v1/items/{ITEM}/records/query", json=BODY, headers=headers)
        statuses.append(answer.status_code)
    return statuses


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_two_workers_answer_on_one_port_and_share_the_store(tmp_path: Path, hub: HubDouble) -> None:
    port = _free_port()
    path = write_config(tmp_path, hub_url=hub.url)
    path.write_text(
        path.read_text().replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"')
    )
    config = load_config(path)
    with RecordStore(config.store_path) as store:
        store.put(ITEM, SUBJECT, RECORD)
    command = [sys.executable, "-m", "onceonly.hub", "adapter", "serve", "--config", str(path)]
    server = subprocess.Popen(
        [*command, "--workers", "2"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the adapter did not answer in 30 s"
            time.sleep(0.1)
        deadline = time.monotonic() + 30
        while len(_children(server.pid)) < 2:  # uvicorn's supervisor, then its workers
            assert time.monotonic() < deadline, "two worker processes did not start"
            time.sleep(0.1)

        # uvicorn's supervisor checked the configuration and keeps nothing of it open
        assert not _open_under(server.pid, config.store_path)

        assert _statuses(url, hub, 20) == [200] * 20

        token = hub.request_token()
        headers = {"Authorization": f"Bearer {token}"}
        replays = []
        for _ in range(6):  # on new connections: both workers see it
            with httpx.Client() as http:
                replays.append(
                    http.post(f"{url}/v1/items/{ITEM}/records/query", json=BODY, headers=headers)
                )
        assert [r.status_code for r in replays] == [200] + [401] * 5
        with RecordStore(config.store_path) as store:
            assert len(store.served_entries()) == 21
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        finally:
            if server.poll() is None:
                server.kill()
            if server.stderr:
                server.stderr.close()


def test_workers_must_be_a_positive_number(tmp_path: Path, hub: HubDouble) -> None:
    path = write_config(tmp_path, hub_url=hub.url)
    command = [sys.executable, "-m", "onceonly.hub", "adapter", "serve", "--config", str(path)]
    refused = subprocess.run([*command, "--workers", "0"], capture_output=True, text=True)
    assert refused.returncode == 1  # a usage error, as every onceonly command's (README)
    assert "--workers: must be at least 1" in refused.stderr


def test_a_source_that_cannot_open_stops_several_workers_before_any_starts(
    tmp_path: Path, hub: HubDouble
) -> None:
    path = write_config(tmp_path, hub_url=hub.url)
    path.write_text(
        path.read_text().replace(
            'source = "store"', 'source = "python"\ncallable = "no_such_module:f"'
        )
    )
    command = [sys.executable, "-m", "onceonly.hub", "adapter", "serve", "--config", str(path)]
    refused = subprocess.run(
        [*command, "--workers", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0
    assert "cannot import 'no_such_module:f'" in refused.stderr


def test_a_client_that_cannot_be_built_stops_several_workers_before_any_starts(
    tmp_path: Path, hub: HubDouble
) -> None:
    """What building the app checks, the supervisor checks too: here the CA bundle the
    environment names for the client that reaches the hub (a restart loop of failing
    workers, otherwise)."""
    path = write_config(tmp_path, hub_url=hub.url)
    (tmp_path / "not-a-bundle.pem").write_text("not a certificate\n")
    command = [sys.executable, "-m", "onceonly.hub", "adapter", "serve", "--config", str(path)]
    refused = subprocess.run(
        [*command, "--workers", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SSL_CERT_FILE": str(tmp_path / "not-a-bundle.pem")},
    )
    assert refused.returncode != 0
    assert "Child process" not in refused.stderr  # uvicorn never started a worker
