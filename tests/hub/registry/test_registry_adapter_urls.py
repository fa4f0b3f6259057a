"""A production hub calls departments' adapters over HTTPS only (deploy/README.md,
"Department adapters"): registering an http:// adapter URL is refused, audited, and
leaves the department as it was; a development hub takes http:// (adapters on
loopback). Real hubs on loopback; production needs PostgreSQL and its keys made by
``onceonly keys init``, as an operator does."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from onceonly.hub.app import create_app
from onceonly.hub.cli import main
from onceonly.hub.cli.servers import loopback_socket, serve_in_thread
from onceonly.hub.config import Settings
from onceonly.hub.keys import HubKeys

from tests.hub_testing import RunningHub, audit_entry_for, empty_postgres, problem_type, running_hub

HTTPS_URL = "https://adapter.civil-registry.example:8443"
HTTP_URL = "http://adapter.civil-registry.example:8080"


@pytest.fixture
def production_hub(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningHub]:
    empty_postgres(postgres_url)
    monkeypatch.setenv("ONCEONLY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ONCEONLY_MODE", "production")
    monkeypatch.setenv("ONCEONLY_ISSUER", "https://hub.example.gov")
    monkeypatch.setenv("ONCEONLY_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ONCEONLY_AUDIT_ORIGIN", "hub.example.gov/audit")
    assert main(["keys", "init"]) == 0
    settings = Settings()
    assert settings.is_production
    keys = HubKeys.load(settings.keys_dir, create=False)
    with serve_in_thread(create_app(settings, keys=keys), loopback_socket()) as url:
        yield RunningHub(url=url, settings=settings, keys=keys)


def put_department(hub: RunningHub, department: str, adapter_url: str) -> httpx.Response:
    return httpx.put(
        f"{hub.url}/v1/admin/departments/{department}",
        json={"name": "Civil Registry", "adapter_url": adapter_url},
        headers={"Authorization": f"Bearer {hub.keys.admin_token}"},
    )


def stored_url(hub: RunningHub, department: str) -> str | None:
    with hub.admin() as admin:
        found = admin.call("GET", f"/v1/admin/departments/{department}")
    return found["adapter_url"]  # type: ignore[no-any-return]


@pytest.mark.postgres
def test_production_refuses_an_http_adapter_url_and_keeps_the_department(
    production_hub: RunningHub,
) -> None:
    department = f"registry-{uuid.uuid4().hex[:8]}"
    refused = put_department(production_hub, department, HTTP_URL)
    assert refused.status_code == 400, refused.text
    assert problem_type(refused) == "adapter-url-not-https"
    assert "https://" in refused.json()["detail"]
    entry = audit_entry_for(production_hub, refused, action="registry.department.put")
    assert (entry["outcome"], entry["department"]) == ("refused", department)
    assert (
        httpx.get(
            f"{production_hub.url}/v1/admin/departments/{department}",
            headers={"Authorization": f"Bearer {production_hub.keys.admin_token}"},
        ).status_code
        == 404
    )  # not registered

    assert put_department(production_hub, department, HTTPS_URL).status_code == 200
    again = put_department(production_hub, department, HTTP_URL)
    assert problem_type(again) == "adapter-url-not-https"
    assert stored_url(production_hub, department) == HTTPS_URL


@pytest.mark.postgres
def test_a_loopback_adapter_url_is_refused_naming_the_setting_that_allows_it(
    production_hub: RunningHub,
) -> None:
    """An operator's review: the refusal said the host is this machine, not that
    ONCEONLY_ADAPTERS_ON_LOOPBACK is how a hub whose adapters share its host allows it.
    A link-local address (cloud metadata), which no setting allows, does not name it."""
    department = f"registry-{uuid.uuid4().hex[:8]}"
    refused = put_department(production_hub, department, "https://localhost:19443")
    assert refused.status_code == 400, refused.text
    assert "is this machine" in refused.json()["detail"]
    assert "ONCEONLY_ADAPTERS_ON_LOOPBACK=true" in refused.json()["detail"]
    metadata = put_department(production_hub, department, "https://169.254.169.254")
    assert metadata.status_code == 400, metadata.text
    assert "ONCEONLY_ADAPTERS_ON_LOOPBACK" not in metadata.json()["detail"]


def test_development_takes_an_http_adapter_url(database_url: str, tmp_path: Path) -> None:
    with running_hub(database_url=database_url, data_dir=tmp_path) as hub:
        assert not hub.settings.is_production
        response = put_department(hub, "civil-registry", HTTP_URL)
        assert response.status_code == 200, response.text
        assert stored_url(hub, "civil-registry") == HTTP_URL
