"""PostgreSQL of the test's own: an empty database on the shared server, or a primary
and a streaming standby on ports of their own.

The machine's shared server (127.0.0.1:5432) allows no replication connections, and a
test must not reconfigure it: these clusters are made with ``initdb`` in a temporary
directory, run as the ``postgres`` user when the tests run as root (PostgreSQL
refuses root), and are stopped and removed at the end.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

_INITDB = ("--auth=trust", "--no-sync", "--no-instructions")
_STREAM = ("-R", "-X", "stream", "--no-sync")
BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _tool(name: str) -> str:
    for directory in BIN_DIRS:
        if (directory / name).is_file():
            return str(directory / name)
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} (PostgreSQL server binaries) is required in CI")
        pytest.skip(f"{name} is not installed")
    return found


def _as_owner(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [*prefix, *command], capture_output=True, text=True, timeout=120, **kwargs
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _from(cluster: "Cluster") -> tuple[str, ...]:
    return ("-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres")


@dataclass
class Cluster:
    directory: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        done = _as_owner(
            [
                _tool("pg_ctl"),
                "-D",
                str(self.directory),
                "-l",
                str(self.directory / "server.log"),
                "-o",
                f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1",
                "-w",
                "start",
            ]
        )
        assert done.returncode == 0, done.stderr + (self.directory / "server.log").read_text()

    def stop(self, mode: str = "fast") -> None:
        _as_owner([_tool("pg_ctl"), "-D", str(self.directory), "-m", mode, "-w", "stop"])

    def promote(self) -> None:
        done = _as_owner([_tool("pg_ctl"), "-D", str(self.directory), "-w", "promote"])
        assert done.returncode == 0, done.stderr

    def sql(self, query: str) -> str:
        done = subprocess.run(
            [_tool("psql"), *_from(self), "-d", "postgres", "-Atc", query],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


@contextmanager
def primary_and_standby() -> Iterator[tuple[Cluster, Cluster]]:
    """A primary and a synchronous standby streaming from it, both started."""
    # Not under pytest's tmp_path: its folders are private to the test's user, and the
    # servers run as postgres.
    root = Path(tempfile.mkdtemp(prefix="onceonly-pg-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    primary = Cluster(root / "primary", _free_port())
    done = _as_owner([_tool("initdb"), "-D", str(primary.directory), "-U", "postgres", *_INITDB])
    assert done.returncode == 0, done.stderr
    with (primary.directory / "postgresql.conf").open("a") as conf:
        # Synchronous replication: a commit is acknowledged only once the standby has
        # it on disk, so losing the primary loses nothing the hub acknowledged.
        conf.write("wal_level = replica\nmax_wal_senders = 4\nsynchronous_standby_names = '*'\n")
    with (primary.directory / "pg_hba.conf").open("a") as hba:
        hba.write("host replication postgres 127.0.0.1/32 trust\n")
    standby = Cluster(root / "standby", _free_port())
    started: list[Cluster] = []
    try:
        primary.start()
        started.append(primary)
        done = _as_owner(
            [_tool("pg_basebackup"), *_from(primary), "-D", str(standby.directory), *_STREAM]
        )
        assert done.returncode == 0, done.stderr
        standby.start()
        started.append(standby)
        yield primary, standby
    finally:
        for cluster in reversed(started):
            cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def wait_for_replay(primary: Cluster, standby: Cluster, *, within: float = 30.0) -> None:
    """Until the standby has replayed everything the primary has written so far."""
    target = primary.sql("SELECT pg_current_wal_lsn()")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        behind = standby.sql(f"SELECT pg_last_wal_replay_lsn() < '{target}'::pg_lsn")
        if behind == "f":
            return
        time.sleep(0.05)
    raise AssertionError(f"the standby did not replay up to {target} in {within} s")


@contextmanager
def new_database(prefix: str = "onceonly_new") -> Iterator[str]:
    """A database with no tables at all on the shared server (``POSTGRES_ADMIN_URL``),
    dropped afterwards: where ``onceonly migrate`` or a restore starts from."""
    from tests.conftest import POSTGRES_ADMIN_URL
    from tests.hub_testing import postgres_admin, unflushed_commits

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with postgres_admin(POSTGRES_ADMIN_URL) as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            unflushed_commits(conn, name)
    except sa.exc.OperationalError as error:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and does not answer: {error}")
        pytest.skip(f"no PostgreSQL at {POSTGRES_ADMIN_URL} ({type(error).__name__})")
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with postgres_admin(POSTGRES_ADMIN_URL) as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
