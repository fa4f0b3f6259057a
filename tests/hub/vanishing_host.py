"""A PostgreSQL host that vanishes, for real: its packets are dropped, not answered.

A proxy in the test's own process cannot show it: the kernel under the proxy
acknowledges what it receives (tests/hub/pg_proxy.py). So this module runs as a
process of its own in a new user and network namespace (``unshare --user --map-root-user
--net``): there the hub's engine reaches the server over TCP on the namespace's loopback
interface, through a proxy that forwards to a Unix socket outside it (a
``proxy_in_thread(..., unix_path=...)`` of the test). Once the engine's connections are
made, the loopback interface goes down: every packet on them, either way, is dropped,
as for a host that was powered off or cut off (no reset, no answer).

``python -m tests.hub.vanishing_host UNIX_PATH DATABASE_URL`` prints one JSON object: for
each engine (the hub's defaults, and ``DATABASE_URL``'s own query where it sets the
timeouts), how many seconds after the interface went down a statement on one connection
failed (``statement``, with ``away``: decision 0049's reason) and an idle connection's
socket reported an error (``idle``), each ``null`` if not within ``WATCH`` seconds.
"""

import asyncio
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Awaitable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from onceonly.hub import db, errors

from tests.hub.pg_proxy import ResettingProxy

WATCH = 45.0  # seconds: past the defaults' 25 s, well short of TCP's 15 minutes


def can_run() -> str | None:
    """Why this cannot run here (no user namespaces, no ``ip``), or None."""
    try:
        probe = subprocess.run(
            ["unshare", "--user", "--map-root-user", "--net", "ip", "link", "set", "lo", "up"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unshare or ip unavailable ({type(error).__name__})"
    if probe.returncode != 0:
        return f"no network namespace for this user: {probe.stderr.decode().strip()}"
    return None


def command(unix_path: str, database_url: str) -> list[str]:
    """The command that runs this module in a network namespace of its own."""
    namespace = ["unshare", "--user", "--map-root-user", "--net"]
    return [*namespace, sys.executable, "-m", __name__, unix_path, database_url]


async def _watch(engine: AsyncEngine, down: asyncio.Event) -> dict[str, Any]:
    """Two connections checked out and never given back (a connection that hangs must
    not be closed: its pool would wait on it)."""
    busy, idle = await engine.connect(), await engine.connect()
    await busy.scalar(sa.text("SELECT 1"))
    await idle.scalar(sa.text("SELECT 1"))
    driver: Any = (await idle.get_raw_connection()).driver_connection
    idle_socket = driver.pgconn.socket
    await down.wait()
    started = time.monotonic()
    statement = asyncio.create_task(_failure(busy.scalar(sa.text("SELECT 2")), started))
    idle_dead = await _errored(idle_socket, started)
    await asyncio.wait({statement}, timeout=max(0.0, WATCH - (time.monotonic() - started)))
    if not statement.done():  # left hanging: the process ends with os._exit
        return {"statement": None, "away": None, "idle": idle_dead}
    return {**statement.result(), "idle": idle_dead}


async def _failure(work: Awaitable[object], started: float) -> dict[str, Any]:
    try:
        await work
    except Exception as error:
        failed_after = time.monotonic() - started
        return {"statement": failed_after, "away": errors.database_away(error)}
    return {"statement": None, "away": "answered"}


async def _errored(fd: int, started: float) -> float | None:
    """When the kernel reported an error on socket ``fd`` (keepalive gave up), polled."""
    poller = select.poll()
    poller.register(fd, select.POLLERR | select.POLLHUP)
    while time.monotonic() - started < WATCH:
        if poller.poll(0):
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    return None


async def main(unix_path: str, database_url: str) -> dict[str, Any]:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    forwarder = ResettingProxy(unix_path)
    await forwarder.start()
    url = make_url(database_url).set(host="127.0.0.1", port=forwarder.port)
    engines = {
        "defaults": db.make_engine(url.set(query={}).render_as_string(hide_password=False)),
        "url": db.make_engine(url.render_as_string(hide_password=False)),
    }
    down = asyncio.Event()
    watches = {name: asyncio.create_task(_watch(e, down)) for name, e in engines.items()}
    await asyncio.sleep(1)  # every connection made and idle
    subprocess.run(["ip", "link", "set", "lo", "down"], check=True)
    down.set()
    return {name: await watch for name, watch in watches.items()}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))), flush=True)
    os._exit(0)  # the forwarder's and the pools' dead connections: nothing to wait for
