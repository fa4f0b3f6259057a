"""``onceonly adapter serve`` stops at a mistake in its configuration before it serves
anything, and starts (with a warning, ``/readyz`` 503) when another system is away
(decision 0061).

It started with a missing table, an SQL syntax error, an unknown item, and a mistyped
column, which then made every answer 200 without that property. Sources connected at
their first query; a mapped column the row lacked read as a NULL."""

import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from onceonly.adapters import InvalidSourceRecord, SqlSource

from tests.adapters.adapter_testing import (
    ITEM,
    SUBJECT,
    HubDouble,
    adapter_process,
    free_port,
    write_config,
)

GOOD_QUERY = "SELECT line1, town FROM addresses WHERE person_code = :subject"
GOOD_COLUMNS = '{ street = "line1", city = "town" }'


@pytest.fixture
def registry(tmp_path: Path) -> str:
    path = tmp_path / "registry.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE addresses (person_code CHAR(11), line1 TEXT, town TEXT)")
        db.execute("INSERT INTO addresses VALUES (?, 'Pikk 1', 'Tallinn')", (SUBJECT,))
    db.close()
    return f"sqlite:///{path}"


def config_with(tmp_path: Path, hub_url: str, item: str, *settings: str) -> Path:
    path = write_config(tmp_path, hub_url=hub_url, items=())
    table = "\n".join([f'[items."{item}"]', *settings])
    path.write_text(path.read_text() + table + "\n")
    return path


def sql_item(registry: str, query: str = GOOD_QUERY, columns: str = GOOD_COLUMNS) -> list[str]:
    return ['source = "sql"', f'url = "{registry}"', f'query = "{query}"', f"columns = {columns}"]


def refused(config: Path) -> str:
    """What ``serve`` printed when it stopped; fails if it went on serving."""
    command = [sys.executable, "-m", "onceonly.hub", "adapter", "serve", "--config", str(config)]
    text = config.read_text().replace(
        'listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{free_port()}"'
    )
    config.write_text(text)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the adapter started serving")
    assert done.returncode == 1, done.stderr
    return done.stderr


MISTAKES = {
    "missing table": (
        {"query": GOOD_QUERY.replace("addresses", "adresses")},
        "no such table: adresses",
    ),
    "SQL syntax": ({"query": GOOD_QUERY.replace("SELECT", "SELEC")}, "syntax error"),
    "mistyped column": (
        {"columns": '{ street = "line_1", city = "town" }'},
        "the query has no column line_1",
    ),
}


@pytest.mark.parametrize("case", MISTAKES.values(), ids=MISTAKES.keys())
def test_a_mistake_in_an_sql_item_stops_serve(
    tmp_path: Path, hub: HubDouble, registry: str, case: tuple[dict[str, str], str]
) -> None:
    settings, said = case
    config = config_with(tmp_path, hub.url, ITEM, *sql_item(registry, **settings))

    stderr = refused(config)

    assert stderr.startswith(f'error: {config}: items."{ITEM}": '), stderr
    assert said in stderr


def test_an_item_the_hub_does_not_know_stops_serve(tmp_path: Path, hub: HubDouble) -> None:
    config = config_with(tmp_path, hub.url, "person.no-such-item", 'source = "store"')

    stderr = refused(config)

    assert 'items."person.no-such-item": the hub\'s registry has no such item' in stderr


def test_a_hub_away_at_start_is_a_warning_and_not_ready(tmp_path: Path, registry: str) -> None:
    config = config_with(tmp_path, f"http://127.0.0.1:{free_port()}", ITEM, *sql_item(registry))

    with adapter_process(config) as (url, server):
        ready = httpx.get(f"{url}/readyz")
        server.send_signal(2)
        server.wait(timeout=20)
        stderr = server.stderr.read().decode() if server.stderr else ""

    assert ready.status_code == 503
    assert "the hub's keys cannot be had" in ready.json()["detail"]
    assert "cannot be reached" in stderr
    assert "serving all the same, /readyz answers 503" in stderr


def test_a_rest_system_away_at_start_is_a_warning(tmp_path: Path, hub: HubDouble) -> None:
    down = f"http://127.0.0.1:{free_port()}/api/{{subject}}"
    config = config_with(tmp_path, hub.url, ITEM, 'source = "rest"', f'url = "{down}"')

    with adapter_process(config) as (url, server):
        ready = httpx.get(f"{url}/readyz")
        server.send_signal(2)
        server.wait(timeout=20)
        stderr = server.stderr.read().decode() if server.stderr else ""

    assert ready.status_code == 503
    assert f'items."{ITEM}": cannot reach' in stderr


def test_a_good_configuration_serves_and_is_ready(
    tmp_path: Path, hub: HubDouble, registry: str
) -> None:
    config = config_with(tmp_path, hub.url, ITEM, *sql_item(registry))

    with adapter_process(config) as (url, _):
        assert httpx.get(f"{url}/readyz").status_code == 200


@pytest.mark.anyio
async def test_a_mapped_column_the_row_lacks_is_an_invalid_record(registry: str) -> None:
    engine = sa.create_engine(registry)
    source = SqlSource(engine, query=GOOD_QUERY, columns={"street": "line1", "city": "twon"})
    try:
        with pytest.raises(InvalidSourceRecord, match="no column 'twon'"):
            await source.fetch(ITEM, SUBJECT)
    finally:
        engine.dispose()
