"""An operator follows the docs from an empty PostgreSQL database to a serving
production hub, then backs it up and restores it (issue 15: production did not start
from the docs).

The commands are the ones deploy/README.md (sections 2 and 4) and docs/operations.md
("Backups") give, run as processes with the environment of deploy/hub.env.example,
only the values an operator must choose replaced. A test below checks that those
documents still name these commands, so the docs and this test change together.
"""

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from onceonly.hub.cli.servers import loopback_socket

from tests.hub_testing import wait_until
from tests.pg_cluster import new_database

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_README = ROOT / "deploy" / "README.md"
OPERATIONS = ROOT / "docs" / "operations.md"

pytestmark = pytest.mark.postgres


def _hub_env(**chosen: str) -> dict[str, str]:
    """deploy/hub.env.example as `set -a; . hub.env` reads it, with ``chosen`` values."""
    values = {}
    for line in (ROOT / "deploy" / "hub.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = chosen.get(name, value)
    return values


def _onceonly(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onceonly.hub", *map(str, args)],
        env={**_base_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}


@pytest.fixture
def empty_databases() -> Iterator[tuple[str, str]]:
    """Two empty PostgreSQL databases (no tables): the hub's, and the restore's."""
    with new_database("onceonly_docs") as first, new_database("onceonly_docs") as second:
        yield first, second


def _serving(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    sock = loopback_socket()
    port = sock.getsockname()[1]
    sock.close()
    hub = subprocess.Popen(
        [sys.executable, "-m", "onceonly.hub", "serve", "--port", str(port)],
        env={**_base_env(), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert hub.poll() is None, hub.stderr.read() if hub.stderr else ""
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, within=60, what="the production hub to be ready")
    return hub, url


def _stop(hub: subprocess.Popen[str]) -> str:
    """As systemd stops a unit: SIGTERM, and a graceful exit (uvicorn shuts down, then
    re-raises the signal it caught, so the status is the signal's); what it logged."""
    hub.send_signal(signal.SIGTERM)
    assert hub.wait(timeout=30) in (0, -signal.SIGTERM)
    assert hub.stderr is not None
    errors = hub.stderr.read()
    hub.stderr.close()
    assert "Traceback" not in errors
    return errors


def test_from_an_empty_database_to_a_serving_hub_and_back_from_a_backup(
    tmp_path: Path, empty_databases: tuple[str, str]
) -> None:
    database, restored_database = empty_databases
    env = _hub_env(
        ONCEONLY_DATABASE_URL=database,
        ONCEONLY_DATA_DIR=str(tmp_path / "var-lib-onceonly"),
    )

    # Before anything: config check names what is missing, one line each, exit 1.
    checked = _onceonly(env, "config", "check")
    assert checked.returncode == 1
    assert "Traceback" not in checked.stderr
    problems = checked.stderr.strip().splitlines()
    assert any("keys init" in line for line in problems), problems
    assert any("migrate" in line for line in problems), problems

    # deploy/README.md, section 2: migrate, keys init.
    assert _onceonly(env, "migrate").returncode == 0
    made = _onceonly(env, "keys", "init")
    assert made.returncode == 0, made.stderr
    verifier_key = made.stdout.rsplit("verifier key for auditors: ", 1)[1].strip()
    assert verifier_key.startswith("exchange.example.gov/audit+")

    # Then the check a rolling restart runs first passes.
    checked = _onceonly(env, "config", "check")
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == ""
    # hub.env.example leaves the break-glass token on: said, not refused
    assert "warning: break_glass_token is on" in checked.stdout

    hub, url = _serving(env)
    try:
        assert httpx.get(f"{url}/v1/audit/verifier-key").text.strip() == verifier_key
        # docs/operations.md, Backups: a backup while the hub runs.
        saved = _onceonly(env, "backup", tmp_path / "backup")
        assert saved.returncode == 0, saved.stderr
        again = _onceonly(env, "backup", tmp_path / "backup")
        assert again.returncode == 1
        assert again.stderr.count("\n") == 1
        assert "new directory" in again.stderr
    finally:
        logged = _stop(hub)
    warned = [json.loads(line) for line in logged.splitlines() if "break_glass_token" in line]
    assert [line["level"] for line in warned] == ["warning"], logged

    # Restoring on another machine: a new database, an empty data directory.
    elsewhere = {
        **env,
        "ONCEONLY_DATABASE_URL": restored_database,
        "ONCEONLY_DATA_DIR": str(tmp_path / "other-host"),
    }
    restored = _onceonly(elsewhere, "restore", tmp_path / "backup")
    assert restored.returncode == 0, restored.stderr
    assert _onceonly(elsewhere, "migrate").returncode == 0
    assert _onceonly(elsewhere, "config", "check").returncode == 0
    hub, url = _serving(elsewhere)
    try:
        # The same log: the verifier key auditors pinned is the restored hub's.
        assert httpx.get(f"{url}/v1/audit/verifier-key").text.strip() == verifier_key
    finally:
        _stop(hub)

    # Restoring twice would overwrite: refused, in one line.
    twice = _onceonly(elsewhere, "restore", tmp_path / "backup")
    assert twice.returncode == 1
    assert "Traceback" not in twice.stderr
    assert twice.stderr.count("\n") == 1


def _commands(markdown: Path) -> set[str]:
    """The onceonly subcommands a document's shell blocks run."""
    blocks = re.findall(r"```sh\n(.*?)```", markdown.read_text(), flags=re.S)
    return {
        " ".join(match.split()[:2]) if match.startswith("keys") else match.split()[0]
        for block in blocks
        for match in re.findall(r"\bonceonly (\w[\w -]*)", block)
    }


def test_the_docs_name_the_commands_this_test_runs() -> None:
    assert {"migrate", "keys init", "config"} <= _commands(DEPLOY_README)
    assert {"backup", "restore", "migrate", "config"} <= _commands(OPERATIONS)
