"""Each kind of source, configured from TOML, behind the provider service over real HTTP:
what the hub sees when a source answers, has nothing, fails, or answers badly."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from onceonly.adapters import RecordStore, create_provider_app, load_config

from tests.adapters.adapter_testing import (
    CONSUMER,
    ITEM,
    OWNER,
    PURPOSE,
    RECORD,
    SUBJECT,
    HubDouble,
    serve,
)

INVALID = "49002124277"  # a record that fails the item's schema
BROKEN = "50001010006"  # the source fails for this subject
UNKNOWN = "60001010007"


def address_record(item: str, subject: str) -> dict[str, Any] | None:
    """The ``source = "python"`` callable of these tests."""
    if subject == BROKEN:
        raise RuntimeError("the registry is down")
    return {SUBJECT: RECORD, INVALID: {"street": "Pikk 1"}}.get(subject)


def legacy_app() -> FastAPI:
    app = FastAPI()

    @app.get("/people/{code}")
    def person(code: str) -> JSONResponse:
        if code == BROKEN:
            return JSONResponse({}, status_code=500)
        if code not in (SUBJECT, INVALID):
            return JSONResponse({}, status_code=404)
        city = "Tallinn" if code == SUBJECT else None
        return JSONResponse({"a": {"l1": "Pikk 1", "town": city, "zip": "10123"}})

    return app


def sql_database(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE people (code TEXT, line1 TEXT, town TEXT, zip TEXT)")
        connection.executemany(
            "INSERT INTO people VALUES (?, ?, ?, ?)",
            [
                (SUBJECT, "Pikk 1", "Tallinn", "10123"),
                (INVALID, "Pikk 1", None, None),
                (BROKEN, "A", "B", "10000"),
                (BROKEN, "C", "D", "10001"),
            ],
        )
    connection.close()
    return f"sqlite:///{path}"


def items_table(kind: str, tmp_path: Path, legacy_url: str) -> str:
    header = f'[items."{ITEM}"]\n'
    if kind == "store":
        return header + 'source = "store"\n'
    if kind == "python":
        callable_ = f"{__name__}:{address_record.__name__}"
        return header + f'source = "python"\ncallable = "{callable_}"\n'
    if kind == "sql":
        url = sql_database(tmp_path / "legacy.db")
        return header + (
            f'source = "sql"\nurl = "{url}"\n'
            'query = "SELECT * FROM people WHERE code = :subject"\n'
            f'[items."{ITEM}".columns]\nstreet = "line1"\ncity = "town"\npostal_code = "zip"\n'
        )
    return header + (
        f'source = "rest"\nurl = "{legacy_url}/people/{{subject}}"\nretries = 1\nbackoff = 0\n'
        f'[items."{ITEM}".fields]\nstreet = "/a/l1"\ncity = "/a/town"\npostal_code = "/a/zip"\n'
    )


@pytest.fixture(scope="module")
def legacy_url() -> Iterator[str]:
    with serve(legacy_app()) as url:
        yield url


@pytest.fixture(params=["store", "sql", "rest", "python"])
def provider(
    request: pytest.FixtureRequest, tmp_path: Path, hub: HubDouble, legacy_url: str
) -> Iterator[str]:
    path = tmp_path / "adapter.toml"
    path.write_text(
        f'department = "{OWNER}"\nhub_url = "{hub.url}"\ndata_dir = "var"\n'
        + items_table(request.param, tmp_path, legacy_url)
    )
    config = load_config(path)
    with RecordStore(config.store_path) as store:
        store.put(ITEM, SUBJECT, RECORD)
        store.put(ITEM, INVALID, {"street": "Pikk 1"})
    with serve(create_provider_app(config)) as url:
        yield url


def query(url: str, hub: HubDouble, subject: str) -> httpx.Response:
    body = {"subject": subject, "purpose": PURPOSE, "consumer": CONSUMER, "version": 1}
    headers = {"Authorization": f"Bearer {hub.request_token(subject)}"}
    return httpx.post(f"{url}/v1/items/{ITEM}/records/query", json=body, headers=headers)


def test_answers_the_sources_record(provider: str, hub: HubDouble) -> None:
    response = query(provider, hub, SUBJECT)

    assert response.status_code == 200, response.text
    assert response.json() == {"item": ITEM, "version": 1, "record": RECORD}


def test_no_record_at_the_source_is_404(provider: str, hub: HubDouble) -> None:
    response = query(provider, hub, UNKNOWN)

    assert response.status_code == 404
    assert response.json()["type"] == "urn:onceonly:problem:record-not-found"


def test_a_record_failing_the_schema_is_502_source_invalid_record(
    provider: str, hub: HubDouble
) -> None:
    response = query(provider, hub, INVALID)

    assert response.status_code == 502
    assert response.json()["type"] == "urn:onceonly:problem:source-invalid-record"


@pytest.mark.parametrize("provider", ["sql", "rest", "python"], indirect=True)
def test_a_failing_source_is_503_or_502_never_500(
    provider: str, hub: HubDouble, request: pytest.FixtureRequest
) -> None:
    kind = request.node.callspec.params["provider"]  # the store cannot fail on one subject

    response = query(provider, hub, BROKEN)

    # SQL finds two rows for this subject: an answer, but not one record.
    expected = (502, "source-invalid-record") if kind == "sql" else (503, "source-unavailable")
    assert (response.status_code, response.json()["type"].rsplit(":", 1)[1]) == expected
    assert response.headers["content-type"] == "application/problem+json"
    assert BROKEN not in response.text
