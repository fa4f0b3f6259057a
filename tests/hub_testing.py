"""Test support: run the hub and adapters as real servers on loopback.

(A module with a unique name, not conftest content, so tests can import it.)
"""

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from hub.app import create_app
from hub.cli.admin_client import AdminClient
from hub.config import Settings
from hub.keys import HubKeys

CATALOGUE = Path(__file__).resolve().parent.parent / "schemas"


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve(app: FastAPI, sock: socket.socket | None = None) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread on a loopback socket; yield its base URL."""
    sock = sock or free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass
class RunningHub:
    url: str
    settings: Settings
    keys: HubKeys

    def admin(self) -> AdminClient:
        return AdminClient(self.url, self.keys.admin_token)


@contextmanager
def running_hub(*, database_url: str, data_dir: Path, **overrides: Any) -> Iterator[RunningHub]:
    sock = free_socket()
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        issuer=f"http://127.0.0.1:{sock.getsockname()[1]}",
        log_json=False,
        **overrides,
    )
    keys = HubKeys.load(settings.keys_dir, create=True)
    with serve(create_app(settings, keys=keys), sock) as url:
        yield RunningHub(url=url, settings=settings, keys=keys)


def load_item(item_id: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((CATALOGUE / "items" / f"{item_id}.json").read_text())
    return document


def problem_type(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return str(response.json()["type"]).removeprefix("urn:onceonly:problem:")
