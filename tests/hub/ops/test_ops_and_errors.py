"""Operators' endpoints, and problem responses for whatever a caller gets wrong."""

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from onceonly.hub import signing_keys
from onceonly.hub.db import make_sync_engine

from tests.hub_testing import (
    DATABASES,
    RunningHub,
    migrated_sqlite,
    module_database,
    problem_type,
    running_hub,
)


@pytest.fixture
def hub(database_url: str, tmp_path: Path) -> Iterator[RunningHub]:
    """A hub of its own: for the tests that count what its log holds, or break it."""
    with running_hub(database_url=database_url, data_dir=tmp_path) as running:
        yield running


@pytest.fixture(scope="module", params=DATABASES)
def shared_hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    """One hub per module and database, for the tests that only look at answers."""
    database_url = module_database(request, tmp_path_factory)
    with running_hub(database_url=database_url, data_dir=tmp_path_factory.mktemp("hub")) as hub:
        yield hub


def test_health_readiness_and_metrics(shared_hub: RunningHub) -> None:
    hub = shared_hub
    assert httpx.get(f"{hub.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{hub.url}/readyz").json() == {"status": "ready"}
    metrics = hub.metrics()
    assert metrics.status_code == 200
    assert "onceonly_http_requests_total" in metrics.text


def _rename_table(database_url: str, old: str, new: str) -> None:
    engine = make_sync_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {old} RENAME TO {new}"))
    finally:
        engine.dispose()


def _ready_within(url: str, *, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while httpx.get(f"{url}/readyz").status_code != 200:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_readyz_is_not_ready_while_the_audit_writer_cannot_commit_and_ready_once_it_can(
    database_url: str, tmp_path: Path
) -> None:
    # The writer probes its table every 0.05 s while its commits fail (production: 1 s).
    with running_hub(
        database_url=database_url, data_dir=tmp_path, audit_probe_interval=0.05
    ) as hub:
        _readyz_follows_the_audit_writer(hub, database_url)


def _readyz_follows_the_audit_writer(hub: RunningHub, database_url: str) -> None:
    _rename_table(database_url, "audit_entries", "audit_entries_away")
    try:
        refused = httpx.get(f"{hub.url}/v1/audit/entries")  # a refusal: its entry fails
        assert problem_type(refused) == "audit-unavailable"
        not_ready = httpx.get(f"{hub.url}/readyz")
        assert not_ready.status_code == 503
        assert problem_type(not_ready) == "unavailable"
        assert not_ready.json()["detail"] == "the audit writer cannot commit"
    finally:
        _rename_table(database_url, "audit_entries_away", "audit_entries")
    assert _ready_within(hub.url, seconds=10)  # the writer's probe finds its table again
    assert httpx.get(f"{hub.url}/v1/audit/entries").status_code == 401  # audited again


def test_readyz_is_not_ready_while_a_signing_key_cannot_be_read_and_ready_once_it_can(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """The state names a key this replica cannot read (not copied to this host yet; or
    written by root, which this test, run as root, cannot be refused): every token
    request and the JWKS fail, so the replica is not ready (decision 0076)."""
    database_url = migrated_sqlite(sqlite_template, tmp_path)
    with running_hub(database_url=database_url, data_dir=tmp_path) as hub:
        assert httpx.get(f"{hub.url}/readyz").status_code == 200
        signing = hub.settings.keys_dir / "signing"
        new = signing_keys.rotate(
            signing, activate_after=60, retire_margin=60, now=int(time.time())
        )
        key_file = signing / f"{new.kid}.jwk"
        kept = key_file.read_bytes()
        key_file.unlink()
        detail = (
            f"the hub cannot read its key file signing/{new.kid}.jwk: No such file or directory"
        )
        assert _readyz_says(hub.url, detail, within=10)  # replicas look every 5 s
        jwks = httpx.get(f"{hub.url}/.well-known/jwks.json")  # a 503 problem, not a 500
        assert (jwks.status_code, problem_type(jwks)) == (503, "unavailable"), jwks.text
        key_file.write_bytes(kept)
        assert _ready_within(hub.url, seconds=10)
        published = httpx.get(f"{hub.url}/.well-known/jwks.json").json()["keys"]
        assert new.kid in [key["kid"] for key in published]


def _readyz_says(url: str, detail: str, *, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        answer = httpx.get(f"{url}/readyz")
        if answer.status_code == 503:
            assert problem_type(answer) == "unavailable"
            assert answer.json()["detail"] == detail
            return True
        time.sleep(0.05)
    return False


def test_every_response_carries_the_hubs_own_request_id(shared_hub: RunningHub) -> None:
    hub = shared_hub
    assert len(httpx.get(f"{hub.url}/healthz").headers["x-request-id"]) == 32
    for offered in ("abc-123", "bad id\t!"):  # a client's id, well-formed or not, is not used
        answered = httpx.get(f"{hub.url}/healthz", headers={"X-Request-Id": offered})
        assert answered.headers["x-request-id"] != offered
        assert len(answered.headers["x-request-id"]) == 32


@pytest.mark.parametrize(
    ("method", "path", "status", "slug"),
    [
        ("GET", "/no/such/route", 404, "not-found"),
        ("DELETE", "/healthz", 405, "method-not-allowed"),
        ("GET", "/v1/audit/entries/12345", 404, "entry-not-found"),
        ("GET", "/v1/audit/entries/-1", 400, "invalid-request"),
        ("GET", "/v1/items/Not..An..Id", 400, "invalid-request"),
        ("GET", "/v1/items/person.identity/versions/0", 400, "invalid-request"),
    ],
)
def test_bad_requests_get_problem_json(
    shared_hub: RunningHub, method: str, path: str, status: int, slug: str
) -> None:
    hub = shared_hub
    response = httpx.request(method, f"{hub.url}{path}")
    assert response.status_code == status
    assert problem_type(response) == slug
    assert response.json()["status"] == status


def test_oversized_body_is_refused_before_it_is_read(shared_hub: RunningHub) -> None:
    """On its head, before any route; the record query authenticates its caller first,
    so that the refusal is audited (tests/hub/exchange), and reads nothing either."""
    hub = shared_hub
    too_large = b"x" * (hub.settings.max_body_bytes + 1)
    response = httpx.put(
        f"{hub.url}/v1/admin/departments/oversized",
        content=too_large,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert problem_type(response) == "payload-too-large"
    anonymous = httpx.post(
        f"{hub.url}/v1/items/person.identity/records/query",
        content=too_large,
        headers={"Content-Type": "application/json"},
    )
    assert anonymous.status_code == 401


def test_audit_query_needs_an_auditor_and_is_itself_audited(hub: RunningHub) -> None:
    refused = httpx.get(f"{hub.url}/v1/audit/entries")
    assert refused.status_code == 401
    with hub.admin() as admin:
        first = admin.audit_entries()
        second = admin.audit_entries(action="audit.query")
    actions = [e["entry"]["action"] for e in first["entries"]]
    assert actions.count("audit.query") == 1  # the refused query
    outcomes = [e["entry"]["outcome"] for e in second["entries"]]
    assert outcomes == ["refused", "ok"]


def test_audit_entries_page_with_a_cursor(hub: RunningHub) -> None:
    with hub.admin() as admin:
        for _ in range(5):
            admin.audit_entries(limit=1)
        page = admin.audit_entries(action="audit.query", limit=2)
        assert len(page["entries"]) == 2
        following = admin.audit_entries(action="audit.query", limit=2, cursor=page["next_cursor"])
    first_indexes = [e["index"] for e in page["entries"]]
    next_indexes = [e["index"] for e in following["entries"]]
    assert max(first_indexes) < min(next_indexes)


def test_audit_entries_filter_by_time_range(hub: RunningHub) -> None:
    with hub.admin() as admin:
        admin.audit_entries()
        everything = admin.audit_entries(action="audit.query")["entries"]
        first = everything[0]["entry"]["time"]
        later = admin.audit_entries(action="audit.query", since="2999-01-01T00:00:00Z")
        earlier = admin.audit_entries(action="audit.query", until=first)
        window = admin.audit_entries(
            action="audit.query", since=first, until="2999-01-01T00:00:00Z"
        )
    assert later["entries"] == []
    assert earlier["entries"] == []
    assert window["entries"][0]["entry"]["time"] == first


def test_audit_export_streams_jsonl_and_csv_and_is_itself_audited(hub: RunningHub) -> None:
    headers = {"Authorization": f"Bearer {hub.keys.admin_token}"}
    with hub.admin() as admin:
        for _ in range(3):
            admin.audit_entries()
    jsonl = httpx.get(
        f"{hub.url}/v1/audit/export", params={"action": "audit.query"}, headers=headers
    )
    assert jsonl.headers["content-type"].startswith("application/jsonl")
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert [line["entry"]["action"] for line in lines] == ["audit.query"] * 3
    csv_export = httpx.get(f"{hub.url}/v1/audit/export", params={"format": "csv"}, headers=headers)
    rows = list(csv.reader(io.StringIO(csv_export.text)))
    assert rows[0][:4] == ["index", "time", "action", "outcome"]
    assert [row[2] for row in rows[1:]] == ["audit.query"] * 3 + ["audit.export"] * 2
    refused = httpx.get(f"{hub.url}/v1/audit/export")
    assert refused.status_code == 401
