"""A PostgreSQL server that does not answer a new connection, or that no connection can
be made to, is told apart from a connection lost on the way: in the warning the hub
logs and in the detail of its 503 ``database-unavailable`` (decisions 0049 and 0052).

The server that does not answer is the loopback proxy of tests/hub/pg_proxy.py,
accepting connections and never answering them; the host that cannot be reached, a
name under ``.invalid`` (RFC 2606), which never resolves."""

import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from onceonly.hub import db, errors

from tests.hub.captured_logs import records_of
from tests.hub.pg_proxy import ProxyThread, ResettingProxy, proxy_in_thread, through, upstream_of
from tests.hub_testing import RunningHub, module_database, problem_type, running_hub

pytestmark = pytest.mark.postgres

NO_ANSWER = "no connection could be made: the server did not answer in time"


@pytest.fixture
async def unanswering(postgres_url: str) -> AsyncIterator[ResettingProxy]:
    url = make_url(postgres_url)
    proxy = ResettingProxy((url.host or "127.0.0.1", url.port or 5432))
    await proxy.start()
    proxy.ignore_new = True
    yield proxy
    await proxy.close()


async def _async_error(engine: AsyncEngine) -> BaseException:
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as error:
        return error
    finally:
        await engine.dispose()
    raise AssertionError("the connection was made")


@pytest.mark.anyio
async def test_a_connection_the_server_never_answers_is_a_connection_not_made_not_one_lost(
    unanswering: ResettingProxy, postgres_url: str
) -> None:
    engine = db.make_engine(through(unanswering.port, postgres_url, connect_timeout="2"))

    error = await _async_error(engine)

    assert errors.database_away(error) == f"{NO_ANSWER} (psycopg ConnectionTimeout)"


@pytest.mark.anyio
async def test_a_host_name_that_does_not_resolve_is_a_connection_not_made(
    postgres_url: str,
) -> None:
    """psycopg resolves the name itself before libpq connects, and its error carries no
    connection of libpq's: it comes outside any statement."""
    url = make_url(postgres_url).set(host="onceonly-no-such-host.invalid")
    engine = db.make_engine(url.render_as_string(hide_password=False))

    error = await _async_error(engine)

    assert errors.database_away(error) == "no connection could be made (psycopg OperationalError)"


# --- a hub whose database does not answer new connections ---------------------------------


@pytest.fixture(scope="module", params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def silent_hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningHub, ProxyThread]]:
    database_url = module_database(request, tmp_path_factory)
    with proxy_in_thread(upstream_of(database_url)) as proxy:
        with running_hub(
            database_url=through(proxy.port, database_url, connect_timeout="2"),
            data_dir=tmp_path_factory.mktemp("hub"),
        ) as hub:
            yield hub, proxy


def test_the_hubs_503_and_its_warning_say_the_database_did_not_answer_a_new_connection(
    silent_hub: tuple[RunningHub, ProxyThread], caplog: pytest.LogCaptureFixture
) -> None:
    """A route that is not audited (the latest checkpoint): its one warning is the
    route's."""
    hub, proxy = silent_hub
    proxy.unanswering()
    try:
        with records_of(caplog, "onceonly", logging.INFO):
            answer = httpx.get(f"{hub.url}/v1/audit/checkpoint", timeout=30)
    finally:
        proxy.back()

    assert answer.status_code == 503, answer.text
    assert problem_type(answer) == "database-unavailable"
    assert answer.json()["detail"] == (
        "the hub's database did not answer a new connection in time; try again later"
    )
    request_id = answer.headers["x-request-id"]
    (line,) = [
        record
        for record in caplog.records
        if record.name == "onceonly.errors" and getattr(record, "request_id", None) == request_id
    ]
    assert (line.levelno, line.exc_info) == (logging.WARNING, None)
    assert line.getMessage() == (
        f"the database is unavailable: {NO_ANSWER} (psycopg ConnectionTimeout);"
        " answered 503 database-unavailable"
    )


def test_the_hubs_503_for_a_database_that_refuses_connections_says_it_could_not_connect(
    silent_hub: tuple[RunningHub, ProxyThread],
) -> None:
    """Every connection carried is reset and every new one refused: the hub's pooled
    connection is found dead at checkout (decision 0040), and a new one cannot be made."""
    hub, proxy = silent_hub
    proxy.away()
    try:
        answer = httpx.get(f"{hub.url}/v1/audit/checkpoint", timeout=30)
    finally:
        proxy.back()

    assert answer.status_code == 503, answer.text
    assert answer.json()["detail"] == ("the hub could not connect to its database; try again later")
