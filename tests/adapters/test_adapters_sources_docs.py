"""docs/adapters.md's examples, run as written: each block marked ``<!-- test: name -->``
is loaded, its sources opened against real SQLite, PostgreSQL and HTTP, and every
record they give is checked against the starter catalogue's schema of the item."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from onceonly.adapters import AdapterConfig, RecordSource, RecordStore, load_config
from onceonly.adapters._sources import close_sources
from onceonly.adapters._validation import compile_validator, violation

from tests.adapters.adapter_testing import serve

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
POSTGRES = os.environ.get("ONCEONLY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SUBJECT = "38001085718"
LEGACY_HOST = "https://population.internal"
_BLOCK = re.compile(r"<!-- test: (?P<name>[\w-]+) -->\n```\w*\n(?P<text>.*?)```", re.S)


def examples() -> dict[str, str]:
    text = (ROOT / "docs" / "adapters.md").read_text(encoding="utf-8")
    return {match["name"]: match["text"] for match in _BLOCK.finditer(text)}


EXAMPLES = examples()


def catalogue_schema(item: str) -> dict[str, Any]:
    entry = json.loads((ROOT / "schemas" / "items" / f"{item}.json").read_text())
    schema: dict[str, Any] = entry["schema"]
    return schema


def assert_valid(item: str, record: object) -> None:
    assert isinstance(record, dict)
    assert violation(compile_validator(catalogue_schema(item)), record) is None, record


def civil_registry_config(tmp_path: Path, legacy_url: str = LEGACY_HOST) -> AdapterConfig:
    blocks = ("civil-registry-head", "rest-config", "sql-config", "python-config")
    text = "\n".join(EXAMPLES[name] for name in blocks)
    path = tmp_path / "civil-registry.toml"
    path.write_text(text.replace(LEGACY_HOST, legacy_url))
    return load_config(path)


@pytest.fixture
async def sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[dict[str, RecordSource]]:
    """The civil registry's sources as the doc configures them, the Python module on
    the import path; REST and SQL are pointed at servers by the tests."""
    (tmp_path / "civil_registry_deaths.py").write_text(EXAMPLES["python-module"])
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("POPULATION_API_AUTH", "Bearer doc-example")
    opened: dict[str, RecordSource] = {}
    yield opened
    await close_sources(opened.values())


def test_the_doc_has_every_example_the_tests_need() -> None:
    assert set(EXAMPLES) == {
        "civil-registry-head",
        "sql-tables",
        "sql-config",
        "rest-answer",
        "rest-config",
        "python-module",
        "python-config",
        "store-config",
        "store-csv",
    }


def test_the_civil_registry_config_loads_with_one_source_of_each_kind(tmp_path: Path) -> None:
    config = civil_registry_config(tmp_path)

    kinds = {item: settings.source for item, settings in config.items.items()}
    assert kinds == {
        "person.identity": "rest",
        "person.residential-address": "sql",
        "person.family-relations": "sql",
        "person.death": "python",
    }


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def registry_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database holding the doc's tables: a file on SQLite, a schema of its own on
    PostgreSQL (the doc's table names are fixed)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'registry.db'}"
        setup, schema = sa.create_engine(url), None
    else:
        schema = f"doc_{uuid.uuid4().hex[:10]}"
        base = POSTGRES.replace("postgresql://", "postgresql+psycopg://")
        url = f"{base}?options=-csearch_path%3D{schema}"
        setup = sa.create_engine(url)
        try:
            with setup.begin() as connection:
                connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
        except sa.exc.OperationalError as error:
            setup.dispose()
            pytest.skip(f"no PostgreSQL at {POSTGRES} ({type(error).__name__})")
    with setup.begin() as connection:
        for statement in EXAMPLES["sql-tables"].split(";"):
            if statement.strip():
                connection.execute(sa.text(statement))
    yield url
    if schema is not None:
        with setup.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    setup.dispose()


async def test_the_sql_examples_give_schema_valid_records(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    registry_db: str,
    sources: dict[str, RecordSource],
) -> None:
    monkeypatch.setenv("CIVIL_REGISTRY_DB", registry_db)
    with RecordStore(tmp_path / "store.db") as store:
        sources.update(civil_registry_config(tmp_path).open_sources(store=store))

    address = await sources["person.residential-address"].fetch("", SUBJECT)
    family = await sources["person.family-relations"].fetch("", SUBJECT)
    single = await sources["person.family-relations"].fetch("", "49002124277")

    assert address == {
        "street": "Rannamäe tee 12-4",
        "city": "Valmera",
        "postal_code": "10145",
        "country": "ND",
        "registered_since": "2019-05-02",
    }
    assert family is not None
    assert [relative["relation"] for relative in family["relatives"]] == ["spouse", "child"]
    assert single == {"personal_code": "49002124277", "marital_status": "single", "relatives": []}
    assert_valid("person.residential-address", address)
    assert_valid("person.family-relations", family)
    assert_valid("person.family-relations", single)


def population_register() -> FastAPI:
    app = FastAPI()

    @app.get("/api/v2/persons/{code}")
    def person(code: str, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != "Bearer doc-example":
            return JSONResponse({}, status_code=401)
        if code != SUBJECT:
            return JSONResponse({}, status_code=404)
        return JSONResponse(json.loads(EXAMPLES["rest-answer"]))

    return app


async def test_the_rest_example_gives_a_schema_valid_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sources: dict[str, RecordSource]
) -> None:
    monkeypatch.setenv("CIVIL_REGISTRY_DB", "sqlite://")
    with serve(population_register()) as url, RecordStore(tmp_path / "store.db") as store:
        sources.update(civil_registry_config(tmp_path, legacy_url=url).open_sources(store=store))
        identity = await sources["person.identity"].fetch("person.identity", SUBJECT)
        unknown = await sources["person.identity"].fetch("person.identity", "49002124277")

    assert identity == {
        "personal_code": SUBJECT,
        "given_name": "Mart",
        "family_name": "Kask",
        "date_of_birth": "1980-01-08",
        "citizenship": "ND",
        "sex": "M",
    }
    assert unknown is None
    assert_valid("person.identity", identity)


async def test_the_python_example_gives_a_schema_valid_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sources: dict[str, RecordSource]
) -> None:
    monkeypatch.setenv("CIVIL_REGISTRY_DB", "sqlite://")
    with RecordStore(tmp_path / "store.db") as store:
        sources.update(civil_registry_config(tmp_path).open_sources(store=store))

    death = await sources["person.death"].fetch("person.death", "37605030299")

    assert death is not None
    assert death["record_number"] == "2024-001874"
    assert await sources["person.death"].fetch("person.death", SUBJECT) is None
    assert_valid("person.death", death)


async def test_the_store_example_imports_the_csv_and_serves_it(tmp_path: Path) -> None:
    path = tmp_path / "tax.toml"
    path.write_text(EXAMPLES["store-config"])
    (tmp_path / "debts.csv").write_text(EXAMPLES["store-csv"])
    config = load_config(path)
    schema = catalogue_schema("tax.debt-status")

    with RecordStore(tmp_path / "records.db") as store:
        report = store.import_csv("tax.debt-status", tmp_path / "debts.csv", schema)
        source = config.open_sources(store=store)["tax.debt-status"]
        debt = await source.fetch("tax.debt-status", SUBJECT)

    assert report.imported == 2
    assert debt is not None
    assert (debt["has_debt"], debt["debt_cents"]) == (True, 125000)
    assert_valid("tax.debt-status", debt)
