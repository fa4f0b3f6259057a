"""Settings refuse what is unsafe at start-up; keys are made once, private, and kept."""

import logging
import os
import re
import stat
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from onceonly.hub.audit.checkpoints import load_signer
from onceonly.hub.config import Settings
from onceonly.hub.keys import HubKeys
from onceonly.hub.kit.keyfiles import MissingKeyError


def test_embedded_default_needs_no_configuration(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'onceonly.db'}"
    assert settings.should_migrate


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"issuer": "http://hub.example.gov"}, "issuer must be an https:// URL"),
        ({"database_url": None}, "database_url must name a PostgreSQL database"),
        ({"database_url": "sqlite:///x.db"}, "database_url must name a PostgreSQL database"),
        ({"password_time_cost": 2}, "password hashing needs at least argon2id t=3"),
        ({"password_memory_kib": 32768}, "password hashing needs at least argon2id t=3"),
    ],
)
def test_production_refuses_insecure_settings(overrides: dict[str, object], complaint: str) -> None:
    values: dict[str, object] = {
        "mode": "production",
        "issuer": "https://hub.example.gov",
        "database_url": "postgresql://hub@db/onceonly",
        **overrides,
    }
    with pytest.raises(ValidationError, match=complaint):
        Settings(**values)


def test_production_does_not_migrate_by_default() -> None:
    settings = Settings(
        mode="production", issuer="https://hub.example.gov", database_url="postgresql://h@db/o"
    )
    assert not settings.should_migrate


def test_settings_come_from_the_toml_file_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "hub.toml"
    config.write_text('issuer = "http://file.example"\nowner_timeout = 2.5\n')
    monkeypatch.setenv("ONCEONLY_CONFIG", str(config))
    monkeypatch.setenv("ONCEONLY_OWNER_TIMEOUT", "7")
    settings = Settings()
    assert (settings.issuer, settings.owner_timeout) == ("http://file.example", 7.0)


HUB_TOML = Path(__file__).resolve().parents[2] / "config" / "hub.toml"


def test_config_hub_toml_lists_every_setting_with_its_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """config/hub.toml is said to list every setting (README.md, docs/operations.md): a
    value or, for one without a default worth writing, a commented ``# name = ...``;
    twelve were missing."""
    text = HUB_TOML.read_text()
    listed = set(tomllib.loads(text)) | set(re.findall(r"^# ?([a-z_]+) = ", text, re.M))
    assert set(Settings.model_fields) - listed == set()
    for variable in [v for v in os.environ if v.upper().startswith("ONCEONLY_")]:
        monkeypatch.delenv(variable)
    defaults = Settings()
    monkeypatch.setenv("ONCEONLY_CONFIG", str(HUB_TOML))
    assert Settings() == defaults  # "Values shown are the defaults"


def test_unknown_setting_in_the_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "hub.toml"
    config.write_text("isuer = 'typo'\n")
    monkeypatch.setenv("ONCEONLY_CONFIG", str(config))
    with pytest.raises(ValidationError, match="isuer"):
        Settings()


def test_missing_config_file_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCEONLY_CONFIG", "/nonexistent/hub.toml")
    with pytest.raises(ValueError, match=r"/nonexistent/hub\.toml"):
        Settings()


def test_keys_are_created_private_and_kept(tmp_path: Path) -> None:
    first = HubKeys.load(tmp_path, create=True)
    signing = [str(p.relative_to(tmp_path)) for p in (tmp_path / "signing").iterdir()]
    for name in [*signing, "pseudonym.key", "derivation.key", "admin-token"]:
        mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
        assert mode == 0o600, name
    again = HubKeys.load(tmp_path, create=True)
    assert (again.kid, again.admin_token) == (first.kid, first.admin_token)
    assert again.pseudonym("38001085718") == first.pseudonym("38001085718")


def test_signing_key_id_is_its_rfc7638_thumbprint(tmp_path: Path) -> None:
    keys = HubKeys.load(tmp_path, create=True)
    assert keys.kid == keys.signing.thumbprint()
    (public,) = keys.public_jwks()["keys"]
    assert "d" not in public
    assert public["kid"] == keys.kid


def test_missing_keys_stop_start_up_when_creation_is_not_allowed(tmp_path: Path) -> None:
    with pytest.raises(MissingKeyError, match="onceonly keys init"):
        HubKeys.load(tmp_path, create=False)


def test_pseudonyms_depend_on_the_secret_and_hide_the_identifier(tmp_path: Path) -> None:
    one = HubKeys.load(tmp_path / "a", create=True)
    other = HubKeys.load(tmp_path / "b", create=True)
    subject = "38001085718"
    assert one.pseudonym(subject) != other.pseudonym(subject)
    assert subject not in one.pseudonym(subject)
    assert len(one.pseudonym(subject)) == 64


def test_admin_token_comparison_accepts_only_the_token(tmp_path: Path) -> None:
    keys = HubKeys.load(tmp_path, create=True)
    assert keys.is_admin_token(keys.admin_token)
    assert not keys.is_admin_token(keys.admin_token[:-1])
    assert not keys.is_admin_token("")


PRODUCTION: dict[str, object] = {
    "mode": "production",
    "issuer": "https://hub.example.gov",
    "database_url": "postgresql://hub@db/onceonly",
}


def test_production_needs_a_fixed_audit_origin() -> None:
    with pytest.raises(RuntimeError, match="production needs audit_origin") as refused:
        Settings(**PRODUCTION).resolved_audit_origin  # noqa: B018
    assert "\n" not in str(refused.value)
    named = Settings(**PRODUCTION, audit_origin="hub.example.gov/audit")
    assert named.resolved_audit_origin == "hub.example.gov/audit"


def test_a_development_origin_ignores_the_port_and_is_kept_beside_the_key(
    tmp_path: Path,
) -> None:
    first = Settings(data_dir=tmp_path, issuer="http://127.0.0.1:8123")
    assert first.resolved_audit_origin == "127.0.0.1/audit"
    signer = load_signer(keys_dir=first.keys_dir, origin=first.resolved_audit_origin, create=True)
    moved = Settings(data_dir=tmp_path, issuer="http://localhost:9000/hub")
    assert moved.resolved_audit_origin == "127.0.0.1/audit"
    again = load_signer(keys_dir=moved.keys_dir, origin=moved.resolved_audit_origin, create=True)
    assert str(again.verifier) == str(signer.verifier)


@pytest.mark.parametrize("mode", [{}, PRODUCTION], ids=["development", "production"])
def test_a_configured_origin_other_than_the_kept_one_is_refused(
    tmp_path: Path, mode: dict[str, object]
) -> None:
    """Decision 0089: a configured origin replaced the kept one, with a warning only."""
    first = Settings(**mode, data_dir=tmp_path, audit_origin="hub.example.gov/audit")
    load_signer(keys_dir=first.keys_dir, origin=first.resolved_audit_origin, create=True)
    assert first.kept_audit_origin == "hub.example.gov/audit"
    changed = Settings(**mode, data_dir=tmp_path, audit_origin="other.example/audit")
    with pytest.raises(RuntimeError, match=r"is named hub\.example\.gov/audit") as refused:
        changed.resolved_audit_origin  # noqa: B018
    assert "keys init --change-audit-origin" in str(refused.value)
    assert changed.kept_audit_origin == "hub.example.gov/audit"


def test_a_renamed_log_warns_and_keeps_the_new_origin(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    derived = Settings(data_dir=tmp_path)
    load_signer(keys_dir=derived.keys_dir, origin=derived.resolved_audit_origin, create=True)
    logger = logging.getLogger("onceonly")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="onceonly"):
            load_signer(keys_dir=derived.keys_dir, origin="hub.example.gov/audit", create=True)
    finally:
        logger.removeHandler(caplog.handler)
    assert "auditors must pin the new verifier key" in caplog.text
    assert Settings(data_dir=tmp_path).resolved_audit_origin == "hub.example.gov/audit"


def test_a_delivery_lease_shorter_than_its_call_is_refused() -> None:
    """helper-148's review: event_lease under owner_timeout let a second hub process
    claim a delivery still being sent, and send it again."""
    with pytest.raises(ValidationError, match=r"event_lease .* must be more than twice"):
        Settings(owner_timeout=20, event_lease=30)
    assert Settings(owner_timeout=10, event_lease=30).event_lease == 30


@pytest.mark.parametrize("origin", ["hub.example.gov/\x01audit", "hub.example.gov/audit\x7f"])
def test_an_audit_origin_with_a_control_character_is_refused(origin: str) -> None:
    """It is the first line of every signed note, which may hold none: the hub would
    start and never be ready (every checkpoint round failing)."""
    with pytest.raises(ValidationError, match="may not contain control characters"):
        Settings(audit_origin=origin)
