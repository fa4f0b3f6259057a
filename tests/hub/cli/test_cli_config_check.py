"""`onceonly config check`: the settings as `serve` reads them, the keys, the database
and its schema; one line per problem (exit 1) or a short summary (exit 0). And list
settings written the way an operator writes them in hub.env (issue 15)."""

import os
import sqlite3
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from onceonly.hub.cli import main
from onceonly.hub.config import Settings
from onceonly.hub.migrate import upgrade

from tests.hub_testing import empty_postgres

Check = Callable[..., tuple[int, list[str], str]]


@pytest.fixture
def check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Check:
    """`onceonly config check` with ``ONCEONLY_*`` = the keyword arguments only."""

    def run(**settings: str) -> tuple[int, list[str], str]:
        for variable in [v for v in os.environ if v.upper().startswith("ONCEONLY_")]:
            monkeypatch.delenv(variable)
        monkeypatch.setenv("ONCEONLY_DATA_DIR", str(tmp_path / "data"))
        for name, value in settings.items():
            monkeypatch.setenv(f"ONCEONLY_{name.upper()}", value)
        status = main(["config", "check"])
        captured = capsys.readouterr()
        return status, captured.err.splitlines(), captured.out

    return run


@pytest.fixture
def production(tmp_path: Path, postgres_url: str) -> dict[str, str]:
    """Production settings on a migrated, emptied PostgreSQL database (keys init then
    makes the keys: it refuses new ones beside data that other keys made)."""
    empty_postgres(postgres_url)
    return {
        "mode": "production",
        "issuer": "https://hub.example.gov",
        "audit_origin": "hub.example.gov/audit",
        "database_url": postgres_url,
        "data_dir": str(tmp_path / "prod"),
    }


def keys_init(monkeypatch: pytest.MonkeyPatch, settings: dict[str, str]) -> None:
    for name, value in settings.items():
        monkeypatch.setenv(f"ONCEONLY_{name.upper()}", value)
    assert main(["keys", "init"]) == 0


# --- list settings -----------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        "portal-a,portal-b",
        "portal-a, portal-b",
        "portal-a portal-b",
        '["portal-a", "portal-b"]',
        " portal-a ,portal-b, ",
    ],
)
def test_a_list_setting_is_read_as_an_operator_writes_it(
    written: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONCEONLY_CITIZEN_PORTAL_CLIENTS", written)
    monkeypatch.setenv("ONCEONLY_HOLIDAYS", "2026-12-24,2026-12-25")
    settings = Settings()
    assert settings.citizen_portal_clients == ["portal-a", "portal-b"]
    assert settings.holidays == [date(2026, 12, 24), date(2026, 12, 25)]


def test_an_empty_list_setting_is_an_empty_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCEONLY_CITIZEN_PORTAL_CLIENTS", "")
    assert Settings().citizen_portal_clients == []


def test_a_toml_array_is_still_a_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "hub.toml"
    config.write_text('holidays = [2026-12-24]\ncitizen_portal_clients = ["portal"]\n')
    monkeypatch.setenv("ONCEONLY_CONFIG", str(config))
    assert Settings().holidays == [date(2026, 12, 24)]
    assert Settings().citizen_portal_clients == ["portal"]


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2026-12-24,someday", "ONCEONLY_HOLIDAYS (value 2): Input should be a valid date"),
        ('["2026-12-24"', "ONCEONLY_HOLIDAYS: neither a JSON array nor values separated"),
    ],
)
def test_config_check_names_a_list_setting_it_cannot_parse(
    check: Check, written: str, expected: str
) -> None:
    status, problems, out = check(holidays=written)
    assert status == 1
    assert len(problems) == 1
    assert problems[0].startswith(expected)
    assert out == ""


# --- the checks --------------------------------------------------------------------


def test_a_fresh_development_hub_is_ready_to_start(check: Check) -> None:
    status, problems, out = check()
    assert (status, problems) == (0, [])
    assert out.splitlines() == [
        "ok settings: development mode, issuer http://127.0.0.1:8000",
        "ok keys: 6 of the key files are created at the first start",
        f"ok database: sqlite:///{Path(Settings().data_dir) / 'onceonly.db'}"
        " is created at the first start",
    ]


def test_every_bad_setting_is_one_line_and_no_value_is_shown(check: Check) -> None:
    status, problems, _ = check(
        max_body_bytes="lots", clock_skew="600", database_url="postgresql://u:s3cret@h/db"
    )
    assert status == 1
    assert [p.split(":")[0] for p in problems] == [
        "ONCEONLY_CLOCK_SKEW",
        "ONCEONLY_MAX_BODY_BYTES",
    ]
    assert not any("lots" in p or "s3cret" in p for p in problems)


def test_production_refusals_are_named(check: Check) -> None:
    status, problems, _ = check(mode="production", issuer="http://hub.example.gov")
    assert status == 1
    assert problems == [
        "settings: production mode refuses insecure settings: issuer must be an https:// URL;"
        " database_url must name a PostgreSQL database"
    ]


def test_an_unknown_setting_in_the_toml_file(
    check: Check, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "hub.toml"
    config.write_text('isuer = "https://hub.example.gov"\n')
    status, problems, _ = check(config=str(config))
    assert (status, problems) == (1, [f"isuer in {config}: not a setting"])


@pytest.mark.postgres
def test_a_provisioned_production_hub_passes(
    check: Check, production: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    keys_init(monkeypatch, production)
    status, problems, out = check(**production)
    assert (status, problems) == (0, [])
    assert "ok keys: loaded from" in out
    assert "schema at the newest revision" in out
    assert "postgresql://postgres@127.0.0.1" in out


@pytest.mark.postgres
def test_risky_production_settings_are_warned_of_not_refused(
    check: Check, production: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """break_glass_token and adapters_on_loopback passed without a word (L5)."""
    keys_init(monkeypatch, production)

    def warnings(**settings: str) -> list[str]:
        status, problems, out = check(**settings)
        assert (status, problems) == (0, [])
        return [line for line in out.splitlines() if line.startswith("warning: ")]

    (glass,) = warnings(**production)  # the default: on
    assert glass.startswith("warning: break_glass_token is on: ")
    assert "ONCEONLY_BREAK_GLASS_TOKEN=false" in glass
    (loopback,) = warnings(**production, break_glass_token="false", adapters_on_loopback="true")
    assert loopback.startswith("warning: adapters_on_loopback is on: ")
    assert warnings(**production, break_glass_token="false") == []
    assert warnings(adapters_on_loopback="true") == []  # development: what it is for


@pytest.mark.postgres
def test_key_files_missing_open_to_others_or_damaged(
    check: Check, production: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, problems, _ = check(**production)
    keys = Path(production["data_dir"]) / "keys"
    assert (status, problems) == (
        1,
        [
            f"key files missing in {keys}: signing/state.json, pseudonym.key,"
            " derivation.key, admin-token, metrics-token, checkpoint.jwk: run `onceonly keys init`"
        ],
    )
    keys_init(monkeypatch, production)
    (keys / "pseudonym.key").chmod(0o644)
    (keys / "derivation.key").write_text("not hex")
    status, problems, _ = check(**production)
    assert status == 1
    assert (
        problems[0] == f"key file {keys / 'pseudonym.key'} is open to others (mode 0644): chmod 600"
    )
    assert len(problems) == 1  # the keys are loaded only once every file is private
    (keys / "pseudonym.key").chmod(0o600)
    status, problems, _ = check(**production)
    assert len(problems) == 1
    assert problems[0].startswith(f"the keys in {keys} do not load: ")


def test_a_database_that_does_not_answer(check: Check) -> None:
    status, problems, _ = check(database_url="postgresql://hub:pw@127.0.0.1:9/hub")
    assert status == 1
    assert len(problems) == 1
    assert problems[0].startswith(
        "cannot reach the database postgresql://hub:***@127.0.0.1:9/hub: "
    )


def test_a_schema_behind_when_the_hub_does_not_migrate(check: Check, tmp_path: Path) -> None:
    database = tmp_path / "hub.db"
    sqlite3.connect(database).close()
    url = f"sqlite:///{database}"
    status, problems, _ = check(database_url=url, auto_migrate="false")
    assert (status, problems) == (
        1,
        [f"the database schema of {url} is not the newest: run `onceonly migrate`"],
    )
    status, problems, out = check(database_url=url)  # development migrates at start-up
    assert (status, problems) == (0, [])
    assert "migrated to the newest schema at start-up" in out
    upgrade(url)
    status, problems, out = check(database_url=url, auto_migrate="false")
    assert (status, problems) == (0, [])
    assert "schema at the newest revision" in out


def test_config_check_changes_nothing(check: Check, tmp_path: Path) -> None:
    assert check()[0] == 0
    assert not (tmp_path / "data").exists()


def test_a_misspelt_variable_is_noted(check: Check) -> None:
    status, problems, out = check(isuer="https://hub.example.gov")
    assert (status, problems) == (0, [])
    assert out.splitlines()[-1] == "note: ONCEONLY_ISUER is not a setting of the hub; it is ignored"
