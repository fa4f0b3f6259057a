"""The SQL source against real SQLite and real PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from onceonly.adapters import (
    InvalidSourceRecord,
    RecordStore,
    SourceUnavailable,
    SqlItem,
    SqlSource,
)
from onceonly.adapters._sources import close_sources

pytestmark = pytest.mark.anyio

POSTGRES = os.environ.get("ONCEONLY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SUBJECT = "38001085718"


@dataclass
class Database:
    url: str
    people: str
    relatives: str
    engines: list[sa.Engine] = field(default_factory=list)

    def source(self, query: str, **settings: Any) -> SqlSource:
        self.engines.append(sa.create_engine(self.url))
        return SqlSource(self.engines[-1], query=query.format(db=self), **settings)


def _create(engine: sa.Engine, db: Database) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                f"CREATE TABLE {db.people} (code VARCHAR(11), line1 VARCHAR(200),"
                " town VARCHAR(100), zip VARCHAR(5), floor_no INTEGER, lat NUMERIC(9, 6),"
                " since DATE, marital VARCHAR(30), secret VARCHAR(20))"
            )
        )
        connection.execute(
            sa.text(
                f"CREATE TABLE {db.relatives} (code VARCHAR(11), relation VARCHAR(20),"
                " relative_code VARCHAR(11), given_name VARCHAR(50))"
            )
        )
        connection.execute(
            sa.text(
                f"INSERT INTO {db.people} VALUES"
                " ('38001085718', 'Pikk 1', 'Tallinn', '10123', NULL, 59.437, '2019-05-02',"
                "  'married', 'x'),"
                " ('49002124277', 'Kooli 7', 'Tartu', NULL, 3, NULL, NULL, 'single', 'y'),"
                " ('twin', 'A 1', 'B', NULL, NULL, NULL, NULL, 'single', NULL),"
                " ('twin', 'A 2', 'B', NULL, NULL, NULL, NULL, 'single', NULL)"
            )
        )
        connection.execute(
            sa.text(
                f"INSERT INTO {db.relatives} VALUES"
                " ('38001085718', 'spouse', '48511174217', 'Kadri'),"
                " ('38001085718', 'child', NULL, 'Oskar')"
            )
        )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    suffix = uuid.uuid4().hex[:8]
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'legacy.db'}"
    else:
        url = POSTGRES.replace("postgresql://", "postgresql+psycopg://")
    db = Database(url=url, people=f"people_{suffix}", relatives=f"relatives_{suffix}")
    engine = sa.create_engine(url)
    try:
        _create(engine, db)
    except sa.exc.OperationalError as error:
        engine.dispose()
        pytest.skip(f"no PostgreSQL at {POSTGRES} ({type(error).__name__})")
    yield db
    for opened in db.engines:
        opened.dispose()
    with engine.begin() as connection:
        connection.execute(sa.text(f"DROP TABLE {db.people}"))
        connection.execute(sa.text(f"DROP TABLE {db.relatives}"))
    engine.dispose()


ADDRESS_QUERY = "SELECT * FROM {db.people} WHERE code = :subject"
ADDRESS_COLUMNS = {
    "street": "line1",
    "city": "town",
    "postal_code": "zip",
    "floor": "floor_no",
    "geo.lat": "lat",
    "moved_in": "since",
}


async def test_maps_columns_to_properties_and_builds_nested_objects(database: Database) -> None:
    source = database.source(ADDRESS_QUERY, columns=ADDRESS_COLUMNS)

    record = await source.fetch("person.residential-address", SUBJECT)

    assert record == {
        "street": "Pikk 1",
        "city": "Tallinn",
        "postal_code": "10123",
        "geo": {"lat": 59.437},
        "moved_in": "2019-05-02",
    }


async def test_null_columns_leave_the_property_out_unless_keep_nulls(database: Database) -> None:
    omitting = database.source(ADDRESS_QUERY, columns=ADDRESS_COLUMNS)
    keeping = database.source(ADDRESS_QUERY, columns=ADDRESS_COLUMNS, keep_nulls=True)

    omitted = await omitting.fetch("x.y", "49002124277")
    kept = await keeping.fetch("x.y", "49002124277")

    assert omitted == {"street": "Kooli 7", "city": "Tartu", "floor": 3}
    assert kept == {
        "street": "Kooli 7",
        "city": "Tartu",
        "postal_code": None,
        "floor": 3,
        "geo": {"lat": None},
        "moved_in": None,
    }


async def test_without_columns_each_column_becomes_the_property_it_labels(
    database: Database,
) -> None:
    source = database.source(
        'SELECT line1 AS street, town AS "address.city" FROM {db.people} WHERE code = :subject'
    )

    assert await source.fetch("x.y", SUBJECT) == {
        "street": "Pikk 1",
        "address": {"city": "Tallinn"},
    }


async def test_no_row_is_no_record(database: Database) -> None:
    source = database.source(ADDRESS_QUERY, columns=ADDRESS_COLUMNS)

    assert await source.fetch("x.y", "00000000000") is None


async def test_the_subject_is_bound_never_formatted_into_the_sql(database: Database) -> None:
    source = database.source(ADDRESS_QUERY, columns=ADDRESS_COLUMNS)

    assert await source.fetch("x.y", "' OR '1'='1") is None
    assert await source.fetch("x.y", f"{SUBJECT}'; DROP TABLE {database.people}; --") is None
    assert await source.fetch("x.y", SUBJECT) is not None


async def test_two_rows_for_one_subject_are_an_invalid_record(database: Database) -> None:
    source = database.source(ADDRESS_QUERY, columns=ADDRESS_COLUMNS)

    with pytest.raises(InvalidSourceRecord, match="more than one row") as caught:
        await source.fetch("x.y", "twin")

    assert (caught.value.status, caught.value.problem_type) == (502, "source-invalid-record")


FAMILY_QUERY = (
    "SELECT p.code, p.marital, r.relation, r.relative_code, r.given_name"
    " FROM {db.people} p LEFT JOIN {db.relatives} r ON r.code = p.code"
    " WHERE p.code = :subject ORDER BY r.relation DESC"
)
FAMILY_COLUMNS = {
    "personal_code": "code",
    "marital_status": "marital",
    "relatives[].relation": "relation",
    "relatives[].personal_code": "relative_code",
    "relatives[].given_name": "given_name",
}


async def test_many_gathers_every_row_into_the_array_property(database: Database) -> None:
    source = database.source(FAMILY_QUERY, columns=FAMILY_COLUMNS, many=True)

    record = await source.fetch("person.family-relations", SUBJECT)

    assert record == {
        "personal_code": SUBJECT,
        "marital_status": "married",
        "relatives": [
            {"relation": "spouse", "personal_code": "48511174217", "given_name": "Kadri"},
            {"relation": "child", "given_name": "Oskar"},
        ],
    }


async def test_many_with_an_outer_join_that_finds_nothing_is_an_empty_array(
    database: Database,
) -> None:
    source = database.source(FAMILY_QUERY, columns=FAMILY_COLUMNS, many=True)

    assert await source.fetch("x.y", "49002124277") == {
        "personal_code": "49002124277",
        "marital_status": "single",
        "relatives": [],
    }
    assert await source.fetch("x.y", "00000000000") is None


async def test_many_refuses_more_rows_than_max_rows(database: Database) -> None:
    source = database.source(FAMILY_QUERY, columns=FAMILY_COLUMNS, many=True, max_rows=1)

    with pytest.raises(InvalidSourceRecord, match="more than 1 rows"):
        await source.fetch("x.y", SUBJECT)


async def test_a_database_that_is_down_is_unavailable_without_quoting_the_subject() -> None:
    source = SqlSource(
        sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"),
        query="SELECT 1 AS one WHERE :subject = 'x'",
    )

    with pytest.raises(SourceUnavailable) as caught:
        await source.fetch("x.y", SUBJECT)
    await source.aclose()

    assert (caught.value.status, caught.value.problem_type) == (503, "source-unavailable")
    assert SUBJECT not in str(caught.value)


async def test_a_query_error_is_unavailable_and_does_not_quote_the_subject(
    database: Database,
) -> None:
    source = database.source("SELECT nope FROM {db.people} WHERE code = :subject")

    with pytest.raises(SourceUnavailable, match="the database query failed") as caught:
        await source.fetch("x.y", SUBJECT)

    assert SUBJECT not in caught.value.detail


@pytest.mark.postgres
async def test_a_slow_query_is_abandoned_after_the_timeout(database: Database) -> None:
    if not database.url.startswith("postgresql"):
        pytest.skip("pg_sleep is PostgreSQL's")
    source = database.source("SELECT pg_sleep(0.8), :subject AS s", timeout=0.2)

    with anyio.fail_after(0.7), pytest.raises(SourceUnavailable, match=r"did not answer in 0\.2 s"):
        await source.fetch("x.y", SUBJECT)
    pool = database.engines[-1].pool
    assert isinstance(pool, sa.QueuePool)
    with anyio.fail_after(5):  # the abandoned query's thread returns its connection
        while pool.checkedout():
            await anyio.sleep(0.01)


async def test_probe_runs_the_query_and_names_missing_columns(database: Database) -> None:
    good = database.source(ADDRESS_QUERY, columns=ADDRESS_COLUMNS)
    typo = database.source(ADDRESS_QUERY, columns={"street": "line_1"})
    broken = database.source("SELECT * FROM missing_table_x WHERE code = :subject")

    assert "the query runs" in await good.probe("x.y")
    with pytest.raises(InvalidSourceRecord, match="no column line_1"):
        await typo.probe("x.y")
    with pytest.raises(SourceUnavailable, match="missing_table_x"):
        await broken.probe("x.y")


async def test_settings_open_a_source_from_the_url_in_the_environment(
    database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LEGACY_DB", database.url)
    settings = SqlItem(
        source="sql",
        url_env="LEGACY_DB",
        query=ADDRESS_QUERY.format(db=database),
        columns=ADDRESS_COLUMNS,
    )

    with RecordStore(tmp_path / "store.db") as store:
        source = settings.open(store=store)

    try:
        record = await source.fetch("x.y", SUBJECT)
    finally:
        await close_sources([source])
    assert record is not None
    assert record["street"] == "Pikk 1"
