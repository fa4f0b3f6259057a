"""Auditors' searches and exports from a read replica (issue 15, one machine is not
enough): with ``read_database_url`` set to a streaming standby, ``GET
/v1/audit/entries`` and ``/v1/audit/export`` read there, and everything else (writes,
proofs, checkpoints) stays on the primary."""

from pathlib import Path

import httpx
import pytest

from onceonly.hub.cli import startup
from onceonly.hub.config import Settings
from onceonly.hub.migrate import upgrade

from tests.hub_testing import (
    CATALOGUE,
    RunningHub,
    empty_postgres,
    problem_type,
    running_hub,
    wait_until,
)
from tests.pg_cluster import primary_and_standby, wait_for_replay

pytestmark = pytest.mark.postgres


def _grant_actions(hub: RunningHub) -> list[str]:
    with hub.admin() as admin:
        page = admin.audit_entries(action="grant.create", limit=1000)
    return [entry["entry"]["request_id"] for entry in page["entries"]]


def _exported(hub: RunningHub) -> str:
    answer = httpx.get(
        f"{hub.url}/v1/audit/export",
        params={"action": "grant.create"},
        headers={"Authorization": f"Bearer {hub.keys.admin_token}"},
    )
    assert answer.status_code == 200, answer.text
    return answer.text


def test_searches_and_exports_read_the_replica(tmp_path: Path) -> None:
    with primary_and_standby() as (primary, standby):
        upgrade(primary.url)
        with running_hub(
            database_url=primary.url,
            read_database_url=standby.url,
            data_dir=tmp_path / "hub",
            checkpoint_interval=0.05,  # the wait for a checkpoint below: a round, not 1 s
        ) as hub:
            with hub.admin() as admin:
                admin.import_catalogue(CATALOGUE)
                first = admin.create_grant(
                    consumer="tax",
                    item="person.identity",
                    purpose="benefit-eligibility",
                    legal_basis="t",
                )
            wait_for_replay(primary, standby)
            assert len(_grant_actions(hub)) == 1
            assert first["id"] in _exported(hub)

            # The standby stops applying what it receives: the primary goes on (its
            # commits wait for the standby's disk, not for its replay) and the search
            # shows the replica's state, without the second grant.
            standby.sql("SELECT pg_wal_replay_pause()")
            with hub.admin() as admin:
                second = admin.create_grant(
                    consumer="tax",
                    item="person.residential-address",
                    purpose="benefit-eligibility",
                    legal_basis="t",
                )
            assert primary.sql("SELECT count(*) FROM grants") == "2"
            assert len(_grant_actions(hub)) == 1
            assert second["id"] not in _exported(hub)
            # Proofs and checkpoints stay on the primary: the newest entries are provable.
            size = int(primary.sql("SELECT count(*) FROM audit_entries"))
            wait_until(
                lambda: (
                    int(httpx.get(f"{hub.url}/v1/audit/checkpoint").text.split("\n")[1]) >= size
                ),
                what="a checkpoint signed from the primary",
            )

            standby.sql("SELECT pg_wal_replay_resume()")
            wait_until(lambda: len(_grant_actions(hub)) == 2, what="the replica catching up")
            assert second["id"] in _exported(hub)


def test_config_check_reaches_the_read_replica(tmp_path: Path, postgres_url: str) -> None:
    base = {"data_dir": tmp_path, "database_url": postgres_url}
    checked = startup.check(Settings(**base, read_database_url=postgres_url))
    assert "read replica: " in " ".join(checked.notes)
    assert not [p for p in checked.problems if "read replica" in p]

    missing = postgres_url.rsplit("/", 1)[0] + "/onceonly_no_such_replica"
    problems = startup.check(Settings(**base, read_database_url=missing)).problems
    assert [p for p in problems if p.startswith("cannot reach the read replica ")], problems


def test_a_replica_that_does_not_answer_is_a_503_not_a_500(
    tmp_path: Path, postgres_url: str
) -> None:
    empty_postgres(postgres_url)  # an earlier test of the session may have left its log
    missing = postgres_url.rsplit("/", 1)[0] + "/onceonly_no_such_replica"
    with running_hub(
        database_url=postgres_url, read_database_url=missing, data_dir=tmp_path / "hub"
    ) as hub:
        headers = {"Authorization": f"Bearer {hub.keys.admin_token}"}
        for path in ("/v1/audit/entries", "/v1/audit/export"):
            answer = httpx.get(f"{hub.url}{path}", headers=headers)
            assert answer.status_code == 503, (path, answer.text)
            assert problem_type(answer) == "unavailable"
        # The rest of the hub does not depend on the replica.
        assert httpx.get(f"{hub.url}/readyz").status_code == 200
