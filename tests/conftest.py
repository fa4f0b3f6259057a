"""Fixtures shared by the whole suite: both databases, and real servers on loopback.

Every storage-touching test runs twice: on SQLite (a file per test, copied from a
template migrated once per test process) and on PostgreSQL (one database per test
process, migrated once and emptied between tests; a module-scoped world gets a copy
of a migrated template database of its own). A world that needs the starter catalogue
there, not its import, copies a template that holds it (decision 0037). Outside CI the
PostgreSQL runs skip, with the reason, when no server answers; in CI (``CI=true``)
they fail instead, so a missing database can never pass unnoticed.
"""

import logging
import os
import sqlite3
import ssl
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa

from onceonly.hub.migrate import upgrade

from tests import pool_guard
from tests.hub_testing import (
    catalogue_into,
    database_name,
    empty_postgres,
    migrated_sqlite,
    postgres_admin,
    unflushed_commits,
)

POSTGRES_ADMIN_URL = os.environ.get(
    "ONCEONLY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


def pytest_configure(config: pytest.Config) -> None:
    _lazy_ca_store()
    pool_guard.install()


# The loggers the hub's and the adapter's start-up configure (hub/kit/logs.py,
# adapters/logs.py): a test that runs a command in this process (`main(["serve", ...])`,
# `config check`) sets their handlers and ``propagate = False``, and every later test in
# the process whose caplog waits for their records saw none (an order-dependent failure
# in CI). Each test finds them as the one before it did.
_CONFIGURED_LOGGERS = (
    "onceonly",
    "adapters",
    "onceonly.adapter",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
)


@pytest.fixture(autouse=True)
def _loggers_as_they_were() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _CONFIGURED_LOGGERS]
    saved = [(lg.handlers[:], lg.filters[:], lg.level, lg.propagate) for lg in loggers]
    yield
    for logger, (handlers, filters, level, propagate) in zip(loggers, saved, strict=True):
        logger.handlers[:], logger.filters[:] = handlers, filters
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture(autouse=True)
def _one_connection_per_request() -> Iterator[None]:
    """Fails a test during which a request took a second connection from a pool it
    already held one of (tests/pool_guard.py)."""
    before = len(pool_guard.violations)
    yield
    found = pool_guard.violations[before:]
    if found:
        pytest.fail(
            "a request took a second connection from a pool it held one of"
            " (it starves the pool under load; decision 0056):\n" + "\n".join(sorted(set(found)))
        )


def _lazy_ca_store() -> None:
    """Every HTTP client the tests make (thousands: ``httpx.get``, AdminClient, HubClient,
    each hub's own) builds an SSL context, even for plain http. From a CA bundle file
    (``SSL_CERT_FILE``, or certifi's when unset) that parses every certificate, ~70 ms;
    from the system's hashed CA directory, the same certificates, OpenSSL reads only one
    it needs, when it needs it, ~1 ms. The tests talk only to loopback, and the tests
    over TLS pass their own CA (or set ``SSL_CERT_FILE`` themselves), so what is trusted
    does not change; subprocesses inherit the setting."""
    directory = Path(ssl.get_default_verify_paths().openssl_capath)
    if any(directory.glob("*.0")):  # hashed links made by c_rehash / update-ca-certificates
        os.environ.pop("SSL_CERT_FILE", None)
        os.environ["SSL_CERT_DIR"] = str(directory)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    admin = sa.create_engine(
        POSTGRES_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"),
        isolation_level="AUTOCOMMIT",
    )
    name = f"onceonly_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            unflushed_commits(conn, name)
    except sa.exc.OperationalError as error:
        admin.dispose()
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and does not answer: {error}")
        pytest.skip(f"no PostgreSQL at {POSTGRES_ADMIN_URL} ({type(error).__name__})")
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_template(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL database migrated once per test process that nothing connects to:
    module-scoped worlds get their own copies of it (``module_database``), so they never
    meet the tests that empty ``postgres_url``."""
    url = postgres_url + "_template"
    with postgres_admin(postgres_url) as admin:
        admin.execute(sa.text(f'CREATE DATABASE "{database_name(url)}"'))
        unflushed_commits(admin, database_name(url))
    upgrade(url)
    yield url
    with postgres_admin(postgres_url) as admin:
        copies = admin.execute(
            sa.text("SELECT datname FROM pg_database WHERE starts_with(datname, :name)"),
            {"name": database_name(url)},
        ).scalars()
        for name in list(copies):  # the template and its copies for modules
            admin.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated once per test process; tests get copies of it."""
    path = tmp_path_factory.mktemp("template") / "hub.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def catalogued_sqlite_template(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The migrated template with the starter catalogue imported, once per test process:
    for worlds that need the catalogue there, not its import (``catalogue_into``).

    Copied out with SQLite's backup API, not as a file: the hub that imported leaves
    a connection to the garbage collector, which keeps the database's WAL file until a
    collection closes it; a backup is one file whatever is still open."""
    scratch = tmp_path_factory.mktemp("catalogued")
    catalogue_into(migrated_sqlite(sqlite_template, scratch), data_dir=scratch / "hub")
    path = tmp_path_factory.mktemp("catalogued") / "hub.db"
    with (
        closing(sqlite3.connect(scratch / "hub.db")) as source,
        closing(sqlite3.connect(path)) as template,
    ):
        source.backup(template)
    return path


@pytest.fixture(scope="session")
def catalogued_postgres_template(
    postgres_template: str, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """``catalogued_sqlite_template`` on PostgreSQL: a copy of the migrated template
    (dropped with it) that module-scoped worlds copy in turn."""
    url = postgres_template + "_catalogued"
    with postgres_admin(postgres_template) as admin:
        name, template = database_name(url), database_name(postgres_template)
        admin.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        unflushed_commits(admin, name)
    catalogue_into(url, data_dir=tmp_path_factory.mktemp("catalogued") / "hub")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated, empty database: SQLite or PostgreSQL."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        return migrated_sqlite(template, tmp_path_factory.mktemp("db"))
    url: str = request.getfixturevalue("postgres_url")
    empty_postgres(url)
    return url


# --- tiers (tests/README.md) -------------------------------------------------------
# A test is "wire" when its module starts servers on loopback or subprocesses, "db"
# when it needs a migrated database and no server, "unit" otherwise: pure calls.
_WIRE_NAMES = frozenset(
    {
        "running_hub",
        "serve",
        "serve_in_thread",
        "exchange_world",
        "module_exchange_world",
        "copied_exchange_world",
        "access_world",
        "granted_client_hub",
        "catalogue_hub",
        "running_provider",
        "HubDouble",
        "subprocess",
        "fresh_venv",
    }
)


def _tier(item: pytest.Item) -> str:
    module = getattr(item, "module", None)
    names = set(vars(module)) if module is not None else set()
    fixtures = set(getattr(item, "fixturenames", ()))
    if names & _WIRE_NAMES or "hub_server" in fixtures:  # the adapters' hub double
        return "wire"
    if "database_url" in fixtures or "postgres_url" in fixtures or "module_database" in names:
        return "db"
    return "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(_tier(item))
    _slowest_first(items)


# --- order (pyproject's addopts: --dist loadfile --no-loadscope-reorder) -------------
# xdist hands out whole files in the order collected here. These files hold one or two
# whole-system tests of half a minute to a minute and more each (fresh venvs, real
# processes, PostgreSQL clusters): started first, they run beside the many short files
# instead of after them, alone on one worker while the other waits.
SLOWEST_FIRST = (
    "tests/test_wheel_install.py",
    "tests/deploy/test_topology.py",
    "tests/deploy/test_production_from_docs.py",
    "tests/test_crash_recovery.py",
    "tests/test_demo.py",
    "tests/hub/test_standby.py",
    "tests/hub/openapi/test_schemathesis.py",
    # The browser tests: few tests a file, so by their number they would run last, one
    # worker idle while the other plays the story in Chromium for a minute.
    "tests/hub/console/test_story_browser.py",
    "tests/hub/console/test_screenshots.py",
    "tests/hub/console/test_admin_browser.py",
    "tests/hub/console/test_steward_browser.py",
    "tests/hub/console/test_console_browser.py",
    "tests/hub/console/test_citizen_browser.py",
    "tests/hub/console/test_auditor_browser.py",
)


def _slowest_first(items: list[pytest.Item]) -> None:
    """The files of SLOWEST_FIRST in its order, then the others by their number of tests,
    most first (xdist's own order); a file's tests keep their order."""
    counts = Counter(item.nodeid.split("::")[0] for item in items)

    def rank(item: pytest.Item) -> tuple[int, int, str]:
        path = item.nodeid.split("::")[0]
        first = SLOWEST_FIRST.index(path) if path in SLOWEST_FIRST else len(SLOWEST_FIRST)
        return first, -counts[path], path

    items.sort(key=rank)
