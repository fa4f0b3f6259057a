"""`onceonly keys init` creates every key a production hub loads (issue 15: the
checkpoint key was missing, and `serve` then refused to start)."""

from pathlib import Path

import httpx
import pytest

from onceonly.hub.app import create_app
from onceonly.hub.audit.notes import Verifier
from onceonly.hub.cli import main
from onceonly.hub.cli.servers import loopback_socket, serve_in_thread
from onceonly.hub.config import Settings

from tests.hub_testing import empty_postgres


@pytest.mark.postgres
def test_a_production_hub_starts_on_the_keys_that_keys_init_made(
    tmp_path: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ONCEONLY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ONCEONLY_MODE", "production")
    monkeypatch.setenv("ONCEONLY_ISSUER", "https://hub.example.gov")
    empty_postgres(postgres_url)  # keys init refuses new keys beside others' data
    monkeypatch.setenv("ONCEONLY_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ONCEONLY_AUDIT_ORIGIN", "hub.example.gov/audit")

    assert main(["keys", "init"]) == 0
    printed = capsys.readouterr().out
    vkey = printed.rsplit("verifier key for auditors: ", 1)[1].strip()
    assert Verifier.parse(vkey).name == "hub.example.gov/audit"
    files = sorted(path.name for path in (tmp_path / "keys").iterdir())
    assert "checkpoint.jwk" in files

    # The production start-up loads every key with create=False: it must find them all.
    with serve_in_thread(create_app(Settings()), loopback_socket()) as url:
        assert httpx.get(f"{url}/readyz").status_code == 200
        published = httpx.get(f"{url}/v1/audit/verifier-key").text
    assert vkey in published

    # A second run keeps what exists.
    assert main(["keys", "init"]) == 0
    assert capsys.readouterr().out == printed
    assert sorted(path.name for path in (tmp_path / "keys").iterdir()) == files


def test_production_keys_init_needs_the_audit_origin(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ONCEONLY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ONCEONLY_MODE", "production")
    monkeypatch.setenv("ONCEONLY_ISSUER", "https://hub.example.gov")
    monkeypatch.setenv("ONCEONLY_DATABASE_URL", "postgresql://hub@127.0.0.1:9/unused")
    assert main(["keys", "init"]) == 1
    assert "ONCEONLY_AUDIT_ORIGIN" in capsys.readouterr().err
