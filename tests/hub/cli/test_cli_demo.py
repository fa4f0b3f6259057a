"""``onceonly demo`` in a shell set up for a real hub: its own hub reads none of the
operator's ``ONCEONLY_*`` settings, so the story neither lands in the real hub's
database or data directory nor is stopped by its mode or its break-glass token."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from onceonly.hub.cli import demo

from tests.hub_testing import RunningHub, running_hub


def test_the_demo_ignores_the_operators_onceonly_settings(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    config = real / "hub.toml"
    config.write_text(f'data_dir = "{real / "from-config"}"\n', encoding="utf-8")
    operator = {
        "ONCEONLY_DATABASE_URL": f"sqlite:///{real / 'hub.db'}",
        "ONCEONLY_DATA_DIR": str(real / "from-env"),
        "ONCEONLY_CONFIG": str(config),
        "ONCEONLY_ADMIN_TOKEN": "the-real-hubs-token",
        "ONCEONLY_PASSWORD_TIME_COST": "3",
    }
    done = subprocess.run(
        [sys.executable, "-m", "onceonly.hub", "demo", "--data-dir", str(tmp_path / "demo")],
        cwd=tmp_path,
        env={**os.environ, **operator},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Every step succeeded" in done.stdout
    assert sorted(path.name for path in real.iterdir()) == ["hub.toml"]  # nothing written
    assert (tmp_path / "demo" / "hub" / "onceonly.db").is_file()


@pytest.fixture
def hub(database_url: str, tmp_path: Path) -> Iterator[RunningHub]:
    with running_hub(database_url=database_url, data_dir=tmp_path / "hub") as running:
        yield running


def test_demo_against_a_running_hub_takes_the_token_that_belongs_to_it(
    hub: RunningHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``demo --hub``: a finished demo's token is left in its data directory with the
    URL its hub served at; it is taken only for that URL. The local hub's token only for
    the local hub's issuer (before: the demo's token was taken whatever the URL, and
    every step was refused 401)."""
    stale = tmp_path / "demo"
    (stale / "hub" / "keys").mkdir(parents=True)
    (stale / "hub" / "keys" / "admin-token").write_text("a-finished-demos-token\n")
    (stale / "hub" / demo.DEMO_HUB_URL_FILE).write_text("http://127.0.0.1:1\n")
    local = tmp_path / "local"
    (local / "keys").mkdir(parents=True)
    (local / "keys" / "admin-token").write_text(hub.keys.admin_token + "\n")
    monkeypatch.setenv("ONCEONLY_DATA_DIR", str(local))
    monkeypatch.setenv("ONCEONLY_ISSUER", hub.url)
    monkeypatch.delenv("ONCEONLY_ADMIN_TOKEN", raising=False)
    assert demo._admin_token(hub.url, stale, own_hub=False) == hub.keys.admin_token

    (stale / "hub" / demo.DEMO_HUB_URL_FILE).write_text(hub.url + "\n")
    assert demo._admin_token(hub.url, stale, own_hub=False) == "a-finished-demos-token"

    monkeypatch.setenv("ONCEONLY_ADMIN_TOKEN", "named-by-the-operator")
    assert demo._admin_token(hub.url, stale, own_hub=False) == "named-by-the-operator"


def test_demo_against_an_unknown_url_sends_no_token_and_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token goes only to the hub it belongs to: for any other --hub URL the demo stops
    before sending one (a hostile review: probing sent every token found on the machine
    to whatever answered 401)."""
    local = tmp_path / "local"
    (local / "keys").mkdir(parents=True)
    (local / "keys" / "admin-token").write_text("the-local-hubs-token\n")
    monkeypatch.setenv("ONCEONLY_DATA_DIR", str(local))
    monkeypatch.setenv("ONCEONLY_ISSUER", "http://127.0.0.1:8000")
    monkeypatch.delenv("ONCEONLY_ADMIN_TOKEN", raising=False)
    with pytest.raises(SystemExit) as refused:
        demo._admin_token("http://attacker.example:8000", tmp_path / "no-demo", own_hub=False)
    message = str(refused.value)
    assert "set ONCEONLY_ADMIN_TOKEN" in message
    assert "the-local-hubs-token" not in message
