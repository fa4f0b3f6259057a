"""Settings that ``config check`` passed and the hub then failed on, each refused by
``config check`` and by ``serve`` (before it listens) with one line (an operator's
review of the CLI contract): a data directory that is a file, an unknown log level, a
database migrated by a newer onceonly, a purpose list that does not exist, a database
that takes no writes (a standby by mistake)."""

import socket
from pathlib import Path

import pytest
import sqlalchemy as sa

from onceonly.hub.config import Settings
from onceonly.hub.db import make_sync_engine

from tests.hub.cli.conftest import Onceonly
from tests.hub_testing import database_name, module_database, postgres_admin

CHECKS = [  # serve refuses before it binds its port
    pytest.param(("config", "check"), id="config-check"),
    pytest.param(("serve", "--port", "1"), id="serve"),
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def own_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database of this test's own, which it may break."""
    return module_database(request, tmp_path_factory)


def one_line(status: int, err: str) -> str:
    assert status == 1, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("command", CHECKS)
def test_a_data_dir_that_is_a_file(onceonly: Onceonly, tmp_path: Path, command: tuple[str]) -> None:
    data = tmp_path / "not-a-folder"
    data.write_text("")
    status, _, err = onceonly(*command, data_dir=str(data))
    assert f"data_dir: {data} is not a directory" in one_line(status, err)


@pytest.mark.parametrize("command", CHECKS)
def test_an_unknown_log_level(onceonly: Onceonly, command: tuple[str]) -> None:
    status, _, err = onceonly(*command, log_level="LOUD")
    assert "ONCEONLY_LOG_LEVEL: Input should be 'DEBUG', 'INFO'" in one_line(status, err)
    assert "LOUD" not in err


@pytest.mark.parametrize(
    ("given", "level"), [("warning", "WARNING"), ("warn", "WARNING"), ("Fatal", "CRITICAL")]
)
def test_a_log_level_is_read_as_pythons_logging_reads_it(
    monkeypatch: pytest.MonkeyPatch, given: str, level: str
) -> None:
    """In any case, and by logging's other names (helper-185: WARN, which logging takes,
    was refused once the level became a closed list)."""
    monkeypatch.setenv("ONCEONLY_LOG_LEVEL", given)
    assert Settings().log_level == level


@pytest.mark.parametrize("command", CHECKS)
def test_a_purpose_list_that_does_not_exist(
    onceonly: Onceonly, tmp_path: Path, command: tuple[str]
) -> None:
    missing = tmp_path / "nonexistent.toml"
    status, _, err = onceonly(*command, purposes_file=str(missing))
    assert f"purposes_file {missing} does not exist" in one_line(status, err)


@pytest.mark.parametrize("command", [*CHECKS, pytest.param(("migrate",), id="migrate")])
@pytest.mark.parametrize("mode", ["development", "production"])
def test_a_database_newer_than_the_code(
    onceonly: Onceonly, own_database: str, command: tuple[str], mode: str
) -> None:
    if mode == "production" and own_database.startswith("sqlite"):
        pytest.skip("production runs on PostgreSQL only")
    engine = make_sync_engine(own_database)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    settings = {"mode": mode, "database_url": own_database}
    if mode == "production":
        settings |= {"issuer": "https://hub.example.gov", "audit_origin": "hub.example.gov/a"}
    status, _, err = onceonly(*command, **settings)
    newer = (
        "the database is at revision 0099, newer than this version of onceonly knows:"
        " upgrade onceonly to the version that migrated it"
    )
    if command == ("config", "check"):
        assert status == 1
        assert [line for line in err.splitlines() if "0099" in line] == [f"{own_database}: {newer}"]
    else:
        assert newer in one_line(status, err)


@pytest.mark.postgres
@pytest.mark.parametrize("command", CHECKS)
def test_a_database_that_takes_no_writes(
    onceonly: Onceonly, postgres_template: str, command: tuple[str]
) -> None:
    url = f"{postgres_template}_readonly_{command[0]}"
    with postgres_admin(postgres_template) as admin:
        template = database_name(postgres_template)
        admin.execute(sa.text(f'CREATE DATABASE "{database_name(url)}" TEMPLATE "{template}"'))
        admin.execute(
            sa.text(f'ALTER DATABASE "{database_name(url)}" SET default_transaction_read_only = on')
        )
    try:
        status, _, err = onceonly(*command, database_url=url)
    finally:
        with postgres_admin(postgres_template) as admin:
            admin.execute(sa.text(f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)'))
    assert f"the database {url} is read-only (default_transaction_read_only is on)" in one_line(
        status, err
    )


def test_a_port_in_use_is_refused_before_the_hub_starts(onceonly: Onceonly) -> None:
    """An operator's review: with the port taken, serve logged "hub ready" (the
    application's start-up runs before uvicorn binds), then failed on the bind in
    uvicorn's own words. Now one line first, and nothing starts."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        status, out, err = onceonly("serve", "--host", "127.0.0.1", "--port", str(port))
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in one_line(status, err)
    assert "hub ready" not in out + err
