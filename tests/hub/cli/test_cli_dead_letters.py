"""``onceonly events dead-letters|replay`` against a real hub whose subscriber fails
every delivery (a server on loopback that answers 503), then is replaced by a working
adapter: the dead letter is listed in every form, replayed, delivered and gone."""

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi import FastAPI, Request, Response
from joserfc.jwk import ECKey

from onceonly.adapters import (
    AdapterConfig,
    DeliveredEvent,
    HubClient,
    create_provider_app,
    public_jwks,
)
from onceonly.hub.cli import main

from tests.hub_testing import (
    RunningHub,
    migrated_sqlite,
    running_hub,
    serve,
    wait_until,
)

OWNER, CONSUMER = "civil-registry", "social-welfare"
ADDRESS = "person.residential-address"
SUBJECT = "38001085718"
FAST_RETRIES = {"event_retry_base": 0.05, "event_retry_cap": 0.2, "event_poll_interval": 0.05}


@dataclass
class World:
    hub: RunningHub
    owner_key: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256", auto_kid=True))
    consumer_key: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256", auto_kid=True))

    def client(self, department: str, key: ECKey) -> HubClient:
        return HubClient(self.hub.url, client_id=f"{department}-adapter", key=key, retries=0)

    def point(self, url: str) -> None:
        with self.hub.admin() as admin:
            admin.put_department(CONSUMER, name="Social Welfare Board", adapter_url=url)


def failing_subscriber() -> FastAPI:
    app = FastAPI()

    @app.post("/{path:path}")
    async def refuse(request: Request) -> Response:
        return Response(status_code=503)

    return app


@pytest.fixture
def world(catalogued_sqlite_template: Path, tmp_path: Path) -> Iterator[World]:
    """SQLite only: what is checked here is the command, not the delivery's storage
    (tests/hub/events runs it on both databases)."""
    (tmp_path / "db").mkdir()
    database_url = migrated_sqlite(catalogued_sqlite_template, tmp_path / "db")
    settings = {**FAST_RETRIES, "event_max_attempts": 2}
    with running_hub(database_url=database_url, data_dir=tmp_path / "hub", **settings) as hub:
        made = World(hub)
        with hub.admin() as admin:
            for department, key in ((OWNER, made.owner_key), (CONSUMER, made.consumer_key)):
                admin.put_client(
                    f"{department}-adapter", department=department, jwks=public_jwks(key)
                )
            admin.create_grant(
                consumer=CONSUMER, item=ADDRESS, purpose="benefit-eligibility", legal_basis="test"
            )
        yield made


@pytest.fixture
def cli(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCEONLY_HUB_URL", world.hub.url)
    monkeypatch.setenv("ONCEONLY_SESSION_FILE", str(tmp_path / "session.json"))
    monkeypatch.setenv("ONCEONLY_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("ONCEONLY_ADMIN_TOKEN", world.hub.keys.admin_token)
    monkeypatch.delenv("ONCEONLY_TOKEN", raising=False)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == 0, err
    assert SUBJECT not in out + err
    return out


def dead_letters(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    listed: list[dict[str, object]] = json.loads(run(["events", "dead-letters"], capsys))[
        "deliveries"
    ]
    return listed


@pytest.mark.usefixtures("cli")
def test_a_dead_letter_is_listed_replayed_and_delivered(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve(failing_subscriber()) as failing:
        world.point(failing)
        with world.client(CONSUMER, world.consumer_key) as consumer:
            consumer.subscribe(ADDRESS)
        with world.client(OWNER, world.owner_key) as owner:
            owner.publish(ADDRESS, SUBJECT, kind="changed")
        wait_until(lambda: len(dead_letters(capsys)) == 1, what="a dead letter")
    (dead,) = dead_letters(capsys)
    assert (dead["attempts"], dead["item"], dead["department"]) == (2, ADDRESS, CONSUMER)

    table = run(["events", "dead-letters", "-o", "table"], capsys).splitlines()
    assert table[0].split()[:4] == ["ID", "ITEM", "DEPARTMENT", "KIND"]
    assert table[1].split()[:4] == [dead["id"], ADDRESS, CONSUMER, "changed"]
    (row,) = csv.DictReader(io.StringIO(run(["events", "dead-letters", "-o", "csv"], capsys)))
    assert (row["id"], row["attempts"]) == (dead["id"], "2")

    received: list[DeliveredEvent] = []
    config = AdapterConfig(department=CONSUMER, hub_url=world.hub.url, data_dir=tmp_path / "c")
    with serve(create_provider_app(config, on_event=received.append)) as working:
        world.point(working)
        replayed = json.loads(run(["events", "replay", str(dead["id"])], capsys))
        assert replayed == {"replayed": dead["id"]}
        wait_until(lambda: len(received) == 1, what="the replayed delivery")
    assert dead_letters(capsys) == []
    assert run(["events", "dead-letters", "-o", "table"], capsys) == ""


@pytest.mark.usefixtures("cli")
def test_replaying_what_is_not_a_dead_letter_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["events", "replay", "0" * 32])
    _, err = capsys.readouterr()
    assert status == 1
    assert err.startswith("refused: HTTP 404: ")
