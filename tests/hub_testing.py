"""Test support: run the hub and adapters as real servers on loopback.

(A module with a unique name, not conftest content, so tests can import it.)
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from hub.app import create_app
from hub.cli.admin_client import AdminClient
from hub.cli.servers import loopback_socket, serve_in_thread
from hub.config import Settings
from hub.keys import HubKeys

serve = serve_in_thread
CATALOGUE = Path(__file__).resolve().parent.parent / "schemas"


@dataclass
class RunningHub:
    url: str
    settings: Settings
    keys: HubKeys

    def admin(self) -> AdminClient:
        return AdminClient(self.url, self.keys.admin_token)


@contextmanager
def running_hub(*, database_url: str, data_dir: Path, **overrides: Any) -> Iterator[RunningHub]:
    sock = loopback_socket()
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        issuer=f"http://127.0.0.1:{sock.getsockname()[1]}",
        log_json=False,
        **overrides,
    )
    keys = HubKeys.load(settings.keys_dir, create=True)
    with serve_in_thread(create_app(settings, keys=keys), sock) as url:
        yield RunningHub(url=url, settings=settings, keys=keys)


def load_item(item_id: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((CATALOGUE / "items" / f"{item_id}.json").read_text())
    return document


def problem_type(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return str(response.json()["type"]).removeprefix("urn:onceonly:problem:")
