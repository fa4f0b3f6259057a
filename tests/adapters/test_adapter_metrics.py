"""The provider adapter's /metrics, /readyz and JSON logs (docs/adapters.md,
"Monitoring"), on a real server on loopback with the hub double."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from onceonly.adapters import (
    RecordStore,
    SourceUnavailable,
    StoreSource,
    create_provider_app,
    load_config,
)
from onceonly.adapters.logs import JsonFormatter, configure_logs, json_logs_wanted
from onceonly.hub.kit.logs import JsonFormatter as HubJsonFormatter

from tests.adapters.adapter_testing import (
    CONSUMER,
    ITEM,
    PURPOSE,
    RECORD,
    SUBJECT,
    HubDouble,
    serve,
    write_config,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    response = httpx.get(f"{url}/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def query(url: str, token: str | None, *, item: str = ITEM, subject: str = SUBJECT) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"subject": subject, "purpose": PURPOSE, "consumer": CONSUMER, "version": 1}
    return httpx.post(
        f"{url}/v1/items/{item}/records/query", json=body, headers=headers
    ).status_code


class Switch:
    """A store source whose probe (what /readyz asks) fails while ``down`` is set."""

    def __init__(self, store: RecordStore) -> None:
        self.inner, self.down = StoreSource(store), False

    async def fetch(self, item: str, subject: str) -> dict[str, Any] | None:
        return await self.inner.fetch(item, subject)

    async def probe(self, item: str) -> str:
        if self.down:
            raise SourceUnavailable("the registry's database is down")
        return await self.inner.probe(item)


@pytest.fixture
def adapter(tmp_path: Path, hub: HubDouble) -> Iterator[tuple[str, RecordStore, Switch]]:
    config = load_config(write_config(tmp_path, hub_url=hub.url))
    with RecordStore(config.store_path) as store:
        store.put(ITEM, SUBJECT, RECORD)
        source = Switch(store)
        with serve(create_provider_app(config, sources={ITEM: source}, readiness_kept=0)) as url:
            yield url, store, source


def test_counts_requests_source_time_and_token_refusals(
    adapter: tuple[str, RecordStore, Switch], hub: HubDouble
) -> None:
    url = adapter[0]
    assert query(url, hub.request_token()) == 200
    assert query(url, hub.request_token()) == 200
    assert query(url, hub.request_token(subject="nobody"), subject="nobody") == 404
    assert query(url, None) == 401
    assert query(url, hub.request_token(aud="tax")) == 401
    assert query(url, hub.request_token(item="person.made-up"), item="person.made-up") == 404
    samples = scrape(url)

    def value(name: str, **labels: str) -> float:
        return samples.get((name, frozenset(labels.items())), 0.0)

    assert value("onceonly_adapter_requests_total", item=ITEM, outcome="ok") == 2
    assert value("onceonly_adapter_requests_total", item=ITEM, outcome="refused") == 3
    assert value("onceonly_adapter_requests_total", item="-", outcome="refused") == 1
    assert value("onceonly_adapter_source_seconds_count", item=ITEM) == 3  # reached the source
    assert value("onceonly_adapter_token_refusals_total", reason="invalid-token") == 2
    labels = {value for _, pairs in samples for _, value in pairs}
    assert "person.made-up" not in labels
    assert SUBJECT not in labels


def test_ready_only_while_sources_answer_and_the_trail_takes_a_write(
    adapter: tuple[str, RecordStore, Switch], tmp_path: Path
) -> None:
    url, _, source = adapter
    assert httpx.get(f"{url}/readyz").json() == {"status": "ready"}

    source.down = True
    down = httpx.get(f"{url}/readyz")
    assert down.status_code == 503
    assert down.headers["content-type"] == "application/problem+json"
    assert f"the source of {ITEM} does not answer" in down.json()["detail"]
    source.down = False

    store_path = load_config(tmp_path / "adapter.toml").store_path
    trail = sqlite3.connect(store_path, isolation_level=None, timeout=0.1)
    try:
        trail.execute("BEGIN IMMEDIATE")  # another writer holds the trail's write lock
        locked = httpx.get(f"{url}/readyz")
    finally:
        trail.execute("ROLLBACK")
        trail.close()
    assert locked.status_code == 503
    assert "the trail store cannot write" in locked.json()["detail"]
    assert httpx.get(f"{url}/readyz").status_code == 200


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A file system of 4 MiB of its own (a tmpfs: needs the right to mount, which CI has)."""
    where = tmp_path / "small"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "--lazy", str(where)], check=False)


def test_not_ready_while_the_trail_stores_disk_is_full(hub: HubDouble, small_disk: Path) -> None:
    config = load_config(write_config(small_disk, hub_url=hub.url))
    with RecordStore(config.store_path) as store:
        store.put(ITEM, SUBJECT, RECORD)
        with serve(
            create_provider_app(config, sources={ITEM: StoreSource(store)}, readiness_kept=0)
        ) as url:
            assert httpx.get(f"{url}/readyz").status_code == 200
            filler = small_disk / "filler"
            with filler.open("wb") as out:
                try:
                    while True:
                        out.write(bytes(1 << 16))
                        out.flush()
                except OSError:  # ENOSPC: the disk is full
                    pass
            full = httpx.get(f"{url}/readyz")
            filler.unlink()
            assert full.status_code == 503
            assert "the trail store's disk is full" in full.json()["detail"]
            assert httpx.get(f"{url}/readyz").status_code == 200


def test_not_ready_when_the_trail_stores_directory_is_gone(hub: HubDouble, tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, hub_url=hub.url))
    with RecordStore(config.store_path) as store:
        source = StoreSource(store)
        with serve(create_provider_app(config, sources={ITEM: source}, readiness_kept=0)) as url:
            assert httpx.get(f"{url}/readyz").status_code == 200
            moved = config.store_path.parent.with_name("moved")
            config.store_path.parent.rename(moved)  # the volume unmounted, say
            gone = httpx.get(f"{url}/readyz")
            moved.rename(config.store_path.parent)
    assert gone.status_code == 503
    assert gone.headers["content-type"] == "application/problem+json"
    assert "the trail store's disk cannot be measured: FileNotFoundError" in gone.json()["detail"]


@pytest.fixture
def restored_loggers() -> Iterator[None]:
    """configure_logs changes process-wide loggers: put them back for the other tests."""
    names = ("adapters", "onceonly.adapter", "uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level,
               logging.getLogger(name).propagate)
        for name in names
    }  # fmt: skip
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate


@pytest.mark.usefixtures("restored_loggers")
def test_json_logs_are_the_hubs_shape_and_hold_no_subject_or_token(
    tmp_path: Path, hub: HubDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logs(as_json=json_logs_wanted(True))
    config = load_config(write_config(tmp_path, hub_url=hub.url))
    token = hub.request_token()
    with RecordStore(config.store_path) as store:
        store.put(ITEM, SUBJECT, RECORD)
        with serve(create_provider_app(config)) as url:
            assert query(url, token) == 200
            assert query(url, hub.request_token(subject="nobody"), subject="nobody") == 404
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    served = [line for line in lines if line["logger"] == "adapters.provider"]

    assert [line["outcome"] for line in served] == ["ok", "refused"]
    assert {"time", "level", "logger", "message", "request_id", "item"} <= set(served[0])
    assert served[0]["item"] == ITEM
    assert SUBJECT not in err
    assert "nobody" not in err
    assert token not in err
    record = logging.LogRecord("x", logging.INFO, "", 0, "m %s", ("a",), None)
    record.request_id = "r1"
    shapes = [json.loads(f.format(record)) for f in (JsonFormatter(), HubJsonFormatter())]
    assert shapes[0] == shapes[1]


def test_json_logs_are_asked_for_by_flag_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONCEONLY_ADAPTER_LOG_JSON", raising=False)
    assert not json_logs_wanted(False)
    assert json_logs_wanted(True)
    monkeypatch.setenv("ONCEONLY_ADAPTER_LOG_JSON", "true")
    assert json_logs_wanted(False)
