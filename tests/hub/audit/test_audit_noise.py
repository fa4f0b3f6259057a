"""The log keeps decisions that matter: setting a hub up from the catalogue refuses
nothing, so it leaves no refusal entries (docs/audit.md, "What is logged")."""

from pathlib import Path

import httpx

from tests.hub_testing import CATALOGUE, running_hub


def test_a_fresh_catalogue_import_leaves_no_refusal_in_the_log(
    database_url: str, tmp_path: Path
) -> None:
    with running_hub(database_url=database_url, data_dir=tmp_path / "hub") as hub:
        with hub.admin() as admin:
            admin.import_catalogue(CATALOGUE)
            admin.import_catalogue(CATALOGUE)  # again: nothing new, nothing refused
            entries = admin.audit_entries(limit=1000)["entries"]
        departments = httpx.get(
            f"{hub.url}/v1/admin/departments",
            headers={"Authorization": f"Bearer {hub.keys.admin_token}"},
        ).json()["departments"]
    outcomes = {(e["entry"]["action"], e["entry"]["outcome"]) for e in entries}
    assert ("registry.department.put", "ok") in outcomes
    assert all(outcome == "ok" for _, outcome in outcomes), sorted(outcomes)
    assert [d["id"] for d in departments] == sorted(d["id"] for d in departments)
    assert len(departments) >= 7
