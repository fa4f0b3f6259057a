"""Test support: run the hub and adapters as real servers on loopback.

(A module with a unique name, not conftest content, so tests can import it.)
"""

import json
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from joserfc.jwk import ECKey

from onceonly.adapters import public_jwks
from onceonly.hub.app import create_app
from onceonly.hub.cli.admin_client import AdminClient
from onceonly.hub.cli.servers import loopback_socket, serve_in_thread
from onceonly.hub.config import Settings
from onceonly.hub.db import make_sync_engine
from onceonly.hub.keys import HubKeys
from onceonly.hub.kit.clock import SYSTEM_CLOCK, Clock

serve = serve_in_thread
CATALOGUE = Path(__file__).resolve().parent.parent / "schemas"
DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
"""Parameters of a module-scoped fixture that runs a whole module on each database."""


@dataclass
class RunningHub:
    url: str
    settings: Settings
    keys: HubKeys

    def admin(self) -> AdminClient:
        return AdminClient(self.url, self.keys.admin_token)

    def metrics(self) -> httpx.Response:
        """``GET /metrics`` as Prometheus scrapes it: with the hub's metrics token
        (keys/metrics-token, decision 0063)."""
        headers = {"Authorization": f"Bearer {self.keys.metrics_token}"}
        return httpx.get(f"{self.url}/metrics", headers=headers, timeout=10)


@contextmanager
def running_hub(
    *,
    database_url: str,
    data_dir: Path,
    clock: Clock = SYSTEM_CLOCK,
    adjust: Callable[[FastAPI], None] | None = None,
    proxy_headers: bool = False,
    **overrides: Any,
) -> Iterator[RunningHub]:
    """A hub served on loopback in a thread; ``clock`` is where it reads time (pass a
    ManualClock and advance it instead of sleeping); ``adjust`` is given the application
    before it serves (a test's own middleware); ``proxy_headers`` makes it take a
    client's address from ``X-Forwarded-For``, as behind a proxy (a test that plays
    many sources)."""
    sock = loopback_socket()
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "issuer": f"http://127.0.0.1:{sock.getsockname()[1]}",
        "log_json": False,
        # The lowest argon2id cost: tests sign many people in; production refuses it.
        "password_time_cost": 1,
        "password_memory_kib": 64,
        **overrides,
    }
    settings = Settings(**values)
    keys = HubKeys.load(settings.keys_dir, create=True, clock=clock)
    app = create_app(settings, keys=keys, clock=clock)
    if adjust is not None:
        adjust(app)
    with serve_in_thread(app, sock, proxy_headers=proxy_headers) as url:
        yield RunningHub(url=url, settings=settings, keys=keys)


@contextmanager
def granted_client_hub(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    client_id: str,
    department: str,
    items: tuple[str, ...],
) -> Iterator[tuple[RunningHub, ECKey]]:
    """A hub on the module's database with the catalogue, one client (its key is
    returned) and grants for ``items`` with purpose ``benefit-eligibility``."""
    database_url = module_database(request, tmp_path_factory, catalogued=True)
    data_dir = tmp_path_factory.mktemp("hub")
    with running_hub(database_url=database_url, data_dir=data_dir) as hub, hub.admin() as admin:
        key = ECKey.generate_key("P-256", auto_kid=True)
        admin.put_client(client_id, department=department, jwks=public_jwks(key))
        for item in items:
            admin.create_grant(
                consumer=department, item=item, purpose="benefit-eligibility", legal_basis="test"
            )
        yield hub, key


@contextmanager
def catalogue_hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    """A hub on the module's database (a fixture parametrized by DATABASES) with the
    starter catalogue imported."""
    database_url = module_database(request, tmp_path_factory, catalogued=True)
    with running_hub(database_url=database_url, data_dir=tmp_path_factory.mktemp("hub")) as hub:
        yield hub


def catalogue_into(database_url: str, *, data_dir: Path) -> None:
    """Import the starter catalogue into a migrated database the way an administrator
    does (a hub on ``data_dir``, its admin API), then take out what ties the database
    to that hub's keys: its signed checkpoints (decision 0037). What is left, the
    registry and the audit log's entries and subtree hashes, names no hub and no key;
    a hub started on a copy signs the log with its own key before it serves.

    Conftest makes the catalogued templates with it, once per test process."""
    with running_hub(database_url=database_url, data_dir=data_dir) as hub, hub.admin() as admin:
        admin.import_catalogue(CATALOGUE)
    engine = make_sync_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_checkpoints"))
    engine.dispose()


def load_item(item_id: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((CATALOGUE / "items" / f"{item_id}.json").read_text())
    return document


def problem_type(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return str(response.json()["type"]).removeprefix("urn:onceonly:problem:")


def module_database(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    catalogued: bool = False,
) -> str:
    """A migrated, empty database for a module-scoped fixture parametrized by DATABASES;
    ``catalogued``: holding the starter catalogue instead, a copy of conftest's
    catalogued template (``catalogue_into``: 1-2 ms for a file copy instead of the
    import's ~30 admin requests, ~0.26 s of CPU).

    Like conftest's ``database_url``, but once per module: a world built once can
    serve many read-mostly tests. On PostgreSQL it is a database of its own, copied
    from conftest's migrated template (and dropped with it), so two worlds of
    one module, and the module's tests that take a fresh ``database_url``, never
    empty each other's tables.
    """
    prefix = "catalogued_" if catalogued else ""
    if request.param == "sqlite":
        return migrated_sqlite(
            request.getfixturevalue(f"{prefix}sqlite_template"), tmp_path_factory.mktemp("db")
        )
    template = str(request.getfixturevalue(f"{prefix}postgres_template"))
    url = f"{template}_{uuid.uuid4().hex[:8]}"
    with postgres_admin(template) as admin:
        admin.execute(
            sa.text(f'CREATE DATABASE "{database_name(url)}" TEMPLATE "{database_name(template)}"')
        )
        unflushed_commits(admin, database_name(url))
    return url  # dropped with the template (each DROP DATABASE waits for a checkpoint)


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


@contextmanager
def postgres_admin(url: str) -> Iterator[sa.Connection]:
    """A connection to the server of ``url`` for CREATE and DROP DATABASE (to its
    maintenance database, so that none of ours is in use)."""
    server = url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    engine = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def unflushed_commits(admin: sa.Connection, name: str) -> None:
    """Commits on the test database ``name`` return before their WAL is flushed to disk
    (``synchronous_commit = off``, for sessions opened from now on; a copy made from it
    does not inherit it). Only a crash of the server itself, which no test causes, could
    lose the last of them; what a session sees and when a commit fails are unchanged."""
    admin.execute(sa.text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))


def migrated_sqlite(template: Path, directory: Path) -> str:
    """A migrated, empty SQLite database in ``directory``: a copy of the template that
    conftest migrates once per test process (a millisecond instead of an Alembic
    upgrade's 0.75 s), or of its catalogued template (``catalogue_into``). The
    template's engine is disposed, so WAL is checkpointed into the one file."""
    assert not template.with_name(template.name + "-wal").exists(), "template not checkpointed"
    path = directory / "hub.db"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


def empty_postgres(url: str) -> None:
    """Delete every row of every table but Alembic's and ``facts_generation`` (whose
    one row must stay): a fresh database without re-migrating. DELETE, not TRUNCATE:
    the tables a test fills hold a few rows, and TRUNCATE gives each of the tables a
    new file (0.3-0.8 s for all of them, here); foreign keys and the audit log's append-only
    triggers are set aside for the transaction (``session_replication_role =
    replica``), as TRUNCATE set them aside. The counter's value is replaced here
    as its triggers would replace it (decision 0038)."""
    engine = make_sync_engine(url)
    with engine.begin() as conn:
        tables = conn.execute(
            sa.text(
                "SELECT tablename FROM pg_tables"
                " WHERE schemaname = 'public'"
                " AND tablename NOT IN ('alembic_version', 'facts_generation')"
            )
        ).scalars()
        deletes = "; ".join(f'DELETE FROM "{t}"' for t in tables)
        if deletes:
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
            conn.exec_driver_sql(deletes)
            conn.exec_driver_sql(  # its triggers fire even so (ENABLE ALWAYS); to be sure
                "UPDATE facts_generation SET value = (random() * 9e18)::bigint"
            )
    engine.dispose()


def request_id_of(answer: httpx.Response | str | object) -> str:
    """The hub's id of the request behind ``answer``: a response (its X-Request-Id), a
    request id itself, or what the SDK gives back (a RecordResult, an OnceonlyError)."""
    if isinstance(answer, httpx.Response):
        return answer.headers["x-request-id"]
    if isinstance(answer, str):
        return answer
    request_id = getattr(answer, "request_id", None)
    assert isinstance(request_id, str), f"{answer!r} carries no request id"
    return request_id


def audit_entries(hub: RunningHub, *, action: str) -> Iterator[dict[str, Any]]:
    """Every audit entry of ``action`` as the log lists them (``index``, ``entry``), all
    pages."""
    with hub.admin() as admin:
        cursor = None
        while True:
            page = admin.audit_entries(action=action, limit=1000, cursor=cursor)
            yield from page["entries"]
            cursor = page["next_cursor"]
            if cursor is None:
                return


def audit_entry_for(
    hub: RunningHub, answer: httpx.Response | str | object, *, action: str
) -> dict[str, Any]:
    """The audit entry of the request that ``answer`` answered (see ``request_id_of``):
    how a test on a world shared by its module finds its own entry among the others'."""
    request_id = request_id_of(answer)
    for found in audit_entries(hub, action=action):
        if found["entry"].get("request_id") == request_id:
            return dict(found["entry"])
    raise AssertionError(f"no {action} audit entry for request {request_id}")


@contextmanager
def added_audit_entries(hub: RunningHub, *, action: str) -> Iterator[list[dict[str, Any]]]:
    """The entries of ``action`` that the block adds to the log, in order (filled in when
    the block ends): on a world shared by a module, what this test's requests left,
    including those whose request id the test never sees (an SDK's retries)."""
    before = {found["index"] for found in audit_entries(hub, action=action)}
    added: list[dict[str, Any]] = []
    yield added
    added.extend(
        dict(found["entry"])
        for found in audit_entries(hub, action=action)
        if found["index"] not in before
    )


TEST_PASSWORD = "correct horse battery staple"


def signed_in(hub: RunningHub, username: str, *roles: dict[str, str]) -> dict[str, str]:
    """Create (or reset) a person with ``roles`` via the break-glass token, sign them in,
    and return their Authorization header."""
    with hub.admin() as admin:
        admin.call(
            "PUT",
            f"/v1/admin/people/{username}",
            {"password": TEST_PASSWORD, "roles": list(roles)},
        )
    response = httpx.post(
        f"{hub.url}/v1/people/sign-in", json={"username": username, "password": TEST_PASSWORD}
    )
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['token']}"}


def steward(department: str) -> dict[str, str]:
    return {"role": "steward", "department": department}


def wait_until(condition: Callable[[], object], *, within: float = 10.0, what: str = "") -> float:
    """Poll ``condition`` until it holds (background work on real threads: the audit
    writer, the checkpointer, the deliverer); seconds it took. Fails after ``within``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within, f"timed out waiting for {what or condition}"
        time.sleep(0.02)
    return time.monotonic() - started


def raw_exchange(url: str, head: bytes) -> bytes:
    """Send ``head`` on a new connection; what came back before the server closed it
    (b"" if it reset the connection before answering)."""
    host, port = url.removeprefix("http://").split(":")
    answer = b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        try:
            sock.sendall(head)
            while chunk := sock.recv(65536):
                answer += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass
    return answer
