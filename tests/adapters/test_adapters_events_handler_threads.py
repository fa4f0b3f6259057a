"""A plain (sync) ``on_event`` handler that blocks holds only the handler's own threads
(``HANDLER_THREADS``): the adapter's SQL record queries and ``/readyz`` keep anyio's
worker threads, and a delivery that cannot start the handler within ``HANDLER_WAIT``
(no free handler thread, or another delivery of its event still being handled) is
answered ``503 handler-busy``, which the hub retries later, instead of waiting for ever.
Over loopback HTTP, against an SQLite source."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from onceonly.adapters import create_provider_app, load_config
from onceonly.adapters._events import HANDLER_THREADS, HANDLER_WAIT, DeliveredEvent

from tests.adapters.adapter_testing import (
    CLIENT_ID,
    CONSUMER,
    ITEM,
    OWNER,
    PURPOSE,
    SUBJECT,
    HubDouble,
    serve,
)
from tests.adapters.test_adapters_events_receiving import an_event, deliver
from tests.adapters.test_adapters_provider import assert_problem

DELIVERIES = 50  # more than anyio's default of 40 worker threads


class Hangs:
    """A plain handler that blocks until released (a lock, a call with no timeout)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running: list[str] = []  # the event ids it was handed

    def __call__(self, event: DeliveredEvent) -> None:
        self.running.append(event.event_id)
        self.release.wait(timeout=30)


@pytest.fixture
def sql_adapter(tmp_path: Path, hub: HubDouble) -> Iterator[tuple[str, Hangs]]:
    """A consumer's adapter whose item is served from SQLite, with a handler that hangs;
    its base URL and the handler, released at the end."""
    database = tmp_path / "registry.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE a (code TEXT, street TEXT, city TEXT)")
        connection.execute("INSERT INTO a VALUES (?, 'Pikk 1', 'Tallinn')", (SUBJECT,))
    config = tmp_path / "adapter.toml"
    config.write_text(
        f'department = "{OWNER}"\nhub_url = "{hub.url}"\nlisten = "127.0.0.1:0"\n'
        f'data_dir = "var/adapter"\nclient_id = "{CLIENT_ID}"\n'
        f'[items."{ITEM}"]\nsource = "sql"\nurl = "sqlite:///{database}"\n'
        'query = "SELECT street, city FROM a WHERE code = :subject"\n'
    )
    handler = Hangs()
    app = create_provider_app(load_config(config), on_event=handler, readiness_kept=0)
    try:
        with serve(app) as url:
            yield url, handler
            handler.release.set()
    finally:
        handler.release.set()


def query(url: str, hub: HubDouble) -> httpx.Response:
    body = {"subject": SUBJECT, "purpose": PURPOSE, "version": 1, "consumer": CONSUMER}
    headers = {"Authorization": f"Bearer {hub.request_token()}"}
    return httpx.post(f"{url}/v1/items/{ITEM}/records/query", json=body, headers=headers, timeout=3)


def status_of(url: str, hub: HubDouble, event: dict[str, str]) -> int | str:
    try:
        return deliver(url, hub, event, timeout=HANDLER_WAIT + 2).status_code
    except httpx.TimeoutException:
        return "hub timed out"


def test_a_hanging_plain_handler_holds_only_its_own_threads(
    sql_adapter: tuple[str, Hangs], hub: HubDouble
) -> None:
    url, handler = sql_adapter
    with ThreadPoolExecutor(DELIVERIES) as pool:
        events = [an_event() for _ in range(DELIVERIES)]
        answers = list(pool.map(lambda event: status_of(url, hub, event), events))

    assert len(handler.running) == HANDLER_THREADS
    assert answers.count("hub timed out") == HANDLER_THREADS  # their handler still runs
    assert answers.count(503) == DELIVERIES - HANDLER_THREADS
    started = time.monotonic()
    record = query(url, hub)
    assert record.status_code == 200, record.text
    assert record.json()["record"] == {"street": "Pikk 1", "city": "Tallinn"}
    assert httpx.get(f"{url}/readyz", timeout=3).status_code == 200
    assert time.monotonic() - started < 2.0


def test_a_delivery_that_cannot_start_the_handler_in_time_is_answered_503(
    sql_adapter: tuple[str, Hangs], hub: HubDouble
) -> None:
    url, handler = sql_adapter
    with ThreadPoolExecutor(HANDLER_THREADS + 1) as pool:
        hanging = [an_event() for _ in range(HANDLER_THREADS)]
        for event in hanging:
            pool.submit(status_of, url, hub, event)
        while len(handler.running) < HANDLER_THREADS:
            time.sleep(0.02)
        again = pool.submit(deliver, url, hub, hanging[0], timeout=10)  # the hub's retry
        started = time.monotonic()
        busy = deliver(url, hub, an_event(), timeout=10)  # no handler thread is free
        waited = time.monotonic() - started
        body = assert_problem(busy, 503, "handler-busy")
        assert "threads of the event handler are busy" in body["detail"]
        body = assert_problem(again.result(), 503, "handler-busy")
        assert "another delivery of this event" in body["detail"]
        handler.release.set()

    assert HANDLER_WAIT <= waited < HANDLER_WAIT + 1.5
    assert len(handler.running) == HANDLER_THREADS  # neither busy delivery ran it
    assert deliver(url, hub, hanging[0], timeout=10).json() == {"status": "duplicate"}
