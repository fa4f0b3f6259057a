"""The benchmark's servers: the hub and the owner's adapter, each a separate process
on a free 127.0.0.1 port, and (optionally) a fresh PostgreSQL database for the hub."""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

BENCH_DIR = Path(__file__).resolve().parent
_START_TIMEOUT = 120.0  # several hub workers importing on a loaded shared machine
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Server:
    """A server process and the base URL it answers on."""

    name: str
    url: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Watched = dict[str, int | Callable[[], float | None]]
"""What to sample: a process id, or a function that sums a group of processes."""


def sample_cpu(watched: Watched) -> dict[str, float | None]:
    """CPU seconds of each watched process (or group) now."""
    return {name: what() if callable(what) else cpu_seconds(what) for name, what in watched.items()}


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants alive now (a uvicorn supervisor and its workers,
    nginx's master and worker)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, stack = [pid], list(parents.get(pid, []))
    while stack:
        child = stack.pop()
        found.append(child)
        stack += parents.get(child, [])
    return found


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU time of ``pid`` and all its descendants alive now, or None when ``pid`` is
    gone."""
    pids = tree_pids(pid)
    total = cpu_seconds(pids[0])
    if total is None:
        return None
    return total + sum(cpu_seconds(child) or 0.0 for child in pids[1:])


def pin_tree(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` and its descendants on ``cpus`` only (Linux: a thread id
    is a pid to ``sched_setaffinity``); threads and processes started later inherit it."""
    for member in tree_pids(pid):
        try:
            threads = [int(task.name) for task in Path(f"/proc/{member}/task").iterdir()]
        except FileNotFoundError:
            continue  # a process that ended meanwhile
        for thread in threads:
            try:
                os.sched_setaffinity(thread, cpus)
            except ProcessLookupError:
                continue  # a thread that ended meanwhile


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux ``/proc``), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


@contextmanager
def running(name: str, command: list[str], *, port: int, env: dict[str, str]) -> Iterator[Server]:
    """Start ``command``, wait until ``/healthz`` answers, stop it when the block ends."""
    log_path = env["BENCH_LOG_DIR"] + f"/{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(name=name, url=f"http://127.0.0.1:{port}", process=process)
    try:
        _wait_healthy(server, log_path)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(server: Server, log_path: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = Path(log_path).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{server.name} exited at start:\n{tail}")
        try:
            if httpx.get(server.url + "/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    tail = Path(log_path).read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{server.name} did not answer within {_START_TIMEOUT:g} s:\n{tail}")


def hub_command(port: int, *, workers: int = 1) -> list[str]:
    """``onceonly serve``, as an operator runs the hub (uvicorn, log level warning)."""
    return [*hub_cli("serve"), "--host=127.0.0.1", f"--port={port}", f"--workers={workers}"]


def hub_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "onceonly.hub", *args]


def prepare_hub(env: dict[str, str]) -> None:
    """``onceonly keys init`` and ``onceonly migrate`` before the first start, so that
    several workers do not race to create keys or migrate."""
    for command in (("keys", "init"), ("migrate",)):
        subprocess.run(hub_cli(*command), env=env, check=True, capture_output=True)


def nginx_config(*, prefix: Path, port: int, upstream_port: int) -> str:
    """A plain reverse proxy on 127.0.0.1:``port`` to ``upstream_port``: one worker,
    no access log, keep-alive connections to the upstream."""
    return f"""daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream adapter {{
        server 127.0.0.1:{upstream_port};
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://adapter;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def nginx_command(*, prefix: Path, port: int, upstream_port: int) -> list[str]:
    """Write the configuration under ``prefix``; nginx runs in the foreground, unprivileged."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    config = prefix / "nginx.conf"
    config.write_text(nginx_config(prefix=prefix, port=port, upstream_port=upstream_port))
    return [nginx, "-e", str(prefix / "error.log"), "-p", str(prefix), "-c", str(config)]


def hub_environment(*, port: int, data_dir: Path, database_url: str | None) -> dict[str, str]:
    env = {
        **os.environ,
        "ONCEONLY_DATA_DIR": str(data_dir),
        "ONCEONLY_ISSUER": f"http://127.0.0.1:{port}",
        "ONCEONLY_LOG_LEVEL": "WARNING",
        "ONCEONLY_AUTO_MIGRATE": "false",
        "BENCH_LOG_DIR": str(data_dir.parent),
    }
    env.pop("ONCEONLY_CONFIG", None)
    if database_url is not None:
        env["ONCEONLY_DATABASE_URL"] = database_url
    return env


def adapter_command(config_path: Path) -> list[str]:
    return [sys.executable, str(BENCH_DIR / "_serve.py"), str(config_path)]


@contextmanager
def fresh_postgres_database(admin_url: str) -> Iterator[str]:
    """Create an empty database on the server of ``admin_url``; drop it afterwards."""
    name = f"onceonly_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextmanager
def postgres_cpu_seconds(database_url: str, every: float = 0.25) -> Iterator[Callable[[], float]]:
    """A sampler of the CPU the PostgreSQL server spends for ``database_url``: its
    backends for that database plus the server's WAL writer, background writer and
    checkpointer (shared with other databases of the server: on a busy shared server
    this over-counts). Connections come and go, so a thread polls every ``every``
    seconds and keeps each backend's last CPU time: a backend that ends is counted up
    to its last poll, and the total never goes back."""
    seen: dict[int, float] = {}
    stop = threading.Event()

    def poll() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            while not stop.is_set():
                rows = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND"
                    " (datname = current_database() OR backend_type IN"
                    " ('walwriter', 'background writer', 'checkpointer'))"
                ).fetchall()
                for (pid,) in rows:
                    cpu = cpu_seconds(pid)
                    if cpu is not None:
                        seen[pid] = max(cpu, seen.get(pid, 0.0))
                stop.wait(every)

    poller = threading.Thread(target=poll, name="postgres-cpu", daemon=True)
    poller.start()
    try:
        yield lambda: sum(seen.values())
    finally:
        stop.set()
        poller.join(timeout=5)
