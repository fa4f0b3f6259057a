"""A streaming standby loses nothing acknowledged (issue 15): the way to avoid the
SHRINK a restored backup rightly shows auditors (docs/operations.md, Backups).

The hub writes to a primary with a synchronous standby; the primary is killed
(SIGKILL, no shutdown), the standby is promoted, and the hub started on it serves a
log that the auditor who saw the latest checkpoint verifies: every entry the hub
acknowledged is there.
"""

from pathlib import Path

import httpx
import pytest

from onceonly.hub.cli import audit_verify
from onceonly.hub.migrate import upgrade

from tests.hub_testing import CATALOGUE, RunningHub, running_hub, wait_until
from tests.pg_cluster import primary_and_standby

pytestmark = pytest.mark.postgres


def _signed_size(hub: RunningHub) -> int:
    return int(httpx.get(f"{hub.url}/v1/audit/checkpoint").text.splitlines()[1])


def test_losing_the_primary_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    with primary_and_standby() as (primary, standby):
        upgrade(primary.url)
        data_dir = tmp_path / "hub"
        auditor = tmp_path / "auditor.json"
        with running_hub(
            database_url=primary.url, data_dir=data_dir, checkpoint_interval=0.1
        ) as hub:
            with hub.admin() as admin:
                admin.import_catalogue(CATALOGUE)
                for item in ("person.identity", "person.residential-address"):
                    admin.create_grant(
                        consumer="tax", item=item, purpose="benefit-eligibility", legal_basis="t"
                    )
            acknowledged = int(primary.sql("SELECT count(*) FROM audit_entries"))
            wait_until(lambda: _signed_size(hub) >= acknowledged, what="a checkpoint of all")
            key = httpx.get(f"{hub.url}/v1/audit/verifier-key").text.strip()
            assert audit_verify.run(hub=hub.url, key=key, state_path=auditor, say=print) == 0
            signed = _signed_size(hub)
            # The primary's machine dies: no shutdown, no last WAL shipped after this.
            primary.stop("immediate")
        standby.promote()
        wait_until(lambda: standby.sql("SELECT pg_is_in_recovery()") == "f", what="promotion")
        kept = int(standby.sql("SELECT count(*) FROM audit_entries"))
        assert kept >= acknowledged

        with running_hub(
            database_url=standby.url, data_dir=data_dir, checkpoint_interval=0.1
        ) as moved:
            assert httpx.get(f"{moved.url}/readyz").status_code == 200
            said: list[str] = []
            code = audit_verify.run(
                hub=moved.url, key=key, state_path=auditor, full=True, say=said.append
            )
            assert code == 0, said
            assert any(f"({signed} entries)" in line for line in said), said
