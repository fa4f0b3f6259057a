"""``onceonly adapter serve`` starts for an SQL item keyed on a number, and a query the
database cancels at start-up is a warning (decision 0061, docs/adapters.md "SQL").

The start-up check runs the query with the made-up subject ``onceonly-check``, which
PostgreSQL cannot cast to a ``BIGINT`` key (InvalidTextRepresentation, SQLSTATE 22P02):
``serve`` stopped as at a mistake, for a configuration that answered every real
subject. A statement_timeout or a lock held by a migration (QueryCanceled, 57014) stopped
it too. A syntax error, a missing table or column, and a mapping mistake still stop it.
"""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from onceonly.adapters import SqlSource

from tests.adapters.adapter_testing import ITEM, SUBJECT, HubDouble, adapter_process
from tests.adapters.test_adapters_start_checks import config_with, refused, sql_item

POSTGRES = os.environ.get("ONCEONLY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
COLUMNS = {"street": "line1", "city": "town"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def numbered(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A table of addresses keyed on a number (BIGINT), with one address; its URL and
    the query that reads it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        url = POSTGRES.replace("postgresql://", "postgresql+psycopg://")
    table = f"numbered_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    f"CREATE TABLE {table} (person_code BIGINT PRIMARY KEY, line1 TEXT, town TEXT)"
                )
            )
            connection.execute(
                sa.text(f"INSERT INTO {table} VALUES ({SUBJECT}, 'Pikk 1', 'Tallinn')")
            )
    except sa.exc.OperationalError as error:
        engine.dispose()
        pytest.skip(f"no PostgreSQL at {POSTGRES} ({type(error).__name__})")
    yield url, f"SELECT line1, town FROM {table} WHERE person_code = :subject"
    with engine.begin() as connection:
        connection.execute(sa.text(f"DROP TABLE {table}"))
    engine.dispose()


def test_an_item_keyed_on_a_number_serves_and_is_ready(
    tmp_path: Path, hub: HubDouble, numbered: tuple[str, str]
) -> None:
    url, query = numbered
    config = config_with(tmp_path, hub.url, ITEM, *sql_item(url, query))

    with adapter_process(config) as (adapter, _):
        assert httpx.get(f"{adapter}/readyz").status_code == 200


@pytest.mark.anyio
async def test_the_probe_of_a_number_key_checks_its_columns_and_the_fetch_reads(
    numbered: tuple[str, str],
) -> None:
    url, query = numbered
    engine = sa.create_engine(url)
    try:
        source = SqlSource(engine, query=query, columns=COLUMNS)
        assert "2 columns" in await source.probe(ITEM)
        assert await source.fetch(ITEM, SUBJECT) == {"street": "Pikk 1", "city": "Tallinn"}
    finally:
        engine.dispose()


GOOD = '{ street = "line1", city = "town" }'
MISTAKES = {  # columns, (a word of the query, as mistyped), what serve says
    "mistyped column": ('{ street = "line_1", city = "town" }', ("", ""), "no column line_1"),
    "missing column": (GOOD, ("person_code", "person_cod"), "person_cod"),
    "SQL syntax": (GOOD, ("SELECT", "SELEC"), "syntax error"),
}


@pytest.mark.parametrize("case", MISTAKES.values(), ids=MISTAKES.keys())
def test_a_mistake_in_an_item_keyed_on_a_number_still_stops_serve(
    tmp_path: Path,
    hub: HubDouble,
    numbered: tuple[str, str],
    case: tuple[str, tuple[str, str], str],
) -> None:
    url, query = numbered
    columns, (word, mistyped), said = case
    query = query.replace(word, mistyped) if word else query
    config = config_with(tmp_path, hub.url, ITEM, *sql_item(url, query, columns))

    stderr = refused(config)

    assert stderr.startswith(f'error: {config}: items."{ITEM}": '), stderr
    assert said in stderr


@pytest.mark.postgres
def test_a_query_cancelled_at_start_is_a_warning_and_not_ready(
    tmp_path: Path, hub: HubDouble
) -> None:
    """A migration holds the table; the operator's URL sets a statement_timeout of 1 s."""
    url = POSTGRES.replace("postgresql://", "postgresql+psycopg://")
    table = f"locked_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(f"CREATE TABLE {table} (person_code TEXT, line1 TEXT, town TEXT)")
            )
    except sa.exc.OperationalError as error:
        engine.dispose()
        pytest.skip(f"no PostgreSQL at {POSTGRES} ({type(error).__name__})")
    query = f"SELECT line1, town FROM {table} WHERE person_code = :subject"
    timed = f"{url}?options=-c%20statement_timeout%3D1000"
    config = config_with(tmp_path, hub.url, ITEM, *sql_item(timed, query))
    try:
        with engine.connect() as migration:
            migration.execute(sa.text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
            with adapter_process(config) as (adapter, server):
                ready = httpx.get(f"{adapter}/readyz", timeout=10)
                server.send_signal(2)
                server.wait(timeout=20)
                stderr = server.stderr.read().decode() if server.stderr else ""
            migration.rollback()
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE {table}"))
        engine.dispose()

    assert ready.status_code == 503
    assert f'items."{ITEM}": the database query failed (QueryCanceled' in stderr
    assert "serving all the same, /readyz answers 503" in stderr
