"""The hub's SQLite database is its user's alone (decision 0070): a data directory the
hub makes is 0700, and the database file it makes 0600, whatever the umask of the
process that starts it (``onceonly serve`` and ``onceonly demo`` set none; the systemd
units do). SQLite gives its ``-wal`` and ``-shm`` files the database file's mode. What
an operator made before is left as it is."""

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from onceonly.hub.cli.servers import loopback_socket
from onceonly.hub.db import make_sync_engine

ROOT = Path(__file__).resolve().parents[2]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def _serving(data_dir: Path) -> Iterator[str]:
    """``onceonly serve`` (development: it migrates at start) on ``data_dir`` under the
    usual umask, 022."""
    with loopback_socket() as sock:
        port = sock.getsockname()[1]
    hub = subprocess.Popen(
        _under_umask_022("serve", "--port", str(port)),
        cwd=ROOT,
        env=_environment(data_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not _ready(url):
            assert hub.poll() is None, "the hub exited at start-up"
            assert time.monotonic() < deadline, "the hub did not start"
            time.sleep(0.1)
        yield url
    finally:
        hub.terminate()
        hub.wait(30)


def _under_umask_022(*command: str) -> list[str]:
    """``onceonly <command>`` under the usual umask, 022."""
    return [
        "sh",
        "-c",
        'umask 022 && exec "$@"',
        "sh",
        sys.executable,
        "-m",
        "onceonly.hub",
        *command,
    ]


def _environment(data_dir: Path) -> dict[str, str]:
    """The hub's settings for a development hub on ``data_dir`` (its default SQLite file)."""
    env = {
        **os.environ,
        "ONCEONLY_DATA_DIR": str(data_dir),
        "ONCEONLY_LOG_LEVEL": "WARNING",
        "ONCEONLY_PASSWORD_TIME_COST": "1",
        "ONCEONLY_PASSWORD_MEMORY_KIB": "64",
    }
    env.pop("ONCEONLY_DATABASE_URL", None)
    return env


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz").status_code == 200
    except httpx.TransportError:
        return False


def test_a_fresh_hub_makes_its_data_directory_and_database_for_its_user_alone(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "var"
    with _serving(data_dir) as url:
        refused = httpx.get(f"{url}/v1/audit/entries", params={"subject": "1"})
        assert refused.status_code == 401  # and audited: a write
        database = data_dir / "onceonly.db"
        modes = {
            path.name: _mode(path)
            for path in (data_dir, database, *database.parent.glob("onceonly.db-*"))
        }
    assert modes == {
        "var": 0o700,
        "onceonly.db": 0o600,
        "onceonly.db-wal": 0o600,
        "onceonly.db-shm": 0o600,
        "onceonly.db-writers": 0o600,  # the writers' gate (onceonly.hub.db): the file's mode
    }


def test_a_directory_and_a_database_file_made_before_keep_their_modes(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir(mode=0o750)
    database = data_dir / "hub.db"
    database.touch(mode=0o640)
    data_dir.chmod(0o750)  # whatever the umask
    database.chmod(0o640)
    engine = make_sync_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x)"))
    engine.dispose()
    assert (_mode(data_dir), _mode(database)) == (0o750, 0o640)


def _onceonly(data_dir: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """``onceonly <command>`` on ``data_dir`` under the usual umask, 022."""
    return subprocess.run(
        _under_umask_022(*command),
        cwd=ROOT,
        env=_environment(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("before", [(), ("keys", "init")], ids=["migrate-alone", "after-keys-init"])
def test_migrate_on_a_fresh_data_directory_makes_it_and_the_database_for_its_user_alone(
    tmp_path: Path, before: tuple[str, ...]
) -> None:
    """docs/operations.md and deploy/README.md run ``migrate`` first on a fresh directory
    (then ``keys init``); the order the other way round must give the same modes."""
    data_dir = tmp_path / "var"
    if before:
        assert _onceonly(data_dir, *before).returncode == 0
    migrated = _onceonly(data_dir, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    database = data_dir / "onceonly.db"
    engine = make_sync_engine(f"sqlite:///{database}")  # the -wal and -shm, as the hub opens it
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT count(*) FROM audit_entries"))
        modes = {
            path.name: _mode(path)
            for path in (data_dir, database, *database.parent.glob("onceonly.db-*"))
        }
    engine.dispose()
    assert modes == {
        "var": 0o700,
        "onceonly.db": 0o600,
        "onceonly.db-wal": 0o600,
        "onceonly.db-shm": 0o600,
    }


def test_migrate_makes_the_missing_folders_above_the_data_directory_private_too(
    tmp_path: Path,
) -> None:
    """``mkdir -p`` gives missing parents the umask's mode (0755 under 022): a data
    directory two folders down was 0700 under 0755 parents (a review)."""
    data_dir = tmp_path / "srv" / "onceonly" / "var"
    migrated = _onceonly(data_dir, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    made = [tmp_path / "srv", tmp_path / "srv" / "onceonly", data_dir]
    assert [_mode(folder) for folder in made] == [0o700, 0o700, 0o700]
    assert _mode(data_dir / "onceonly.db") == 0o600
