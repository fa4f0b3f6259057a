"""The real ``onceonly`` command, in a subprocess: a start-up failure of ``serve``,
``migrate`` or ``keys init`` is one line on standard error (a JSON record when logs
are JSON) with a non-zero exit, never a traceback; a hub that cannot be reached is
exit 2 and one line (issue 15)."""

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from onceonly.hub.cli.servers import loopback_socket

from tests.hub_testing import running_hub, wait_until


@dataclass(frozen=True)
class Ran:
    status: int
    out: str
    err: str


def onceonly(*argv: str, cwd: Path, env: dict[str, str]) -> Ran:
    """``python -m onceonly.hub ARGV`` in ``cwd``, with no ``ONCEONLY_*`` variable of
    this process, only ``env``'s."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("ONCEONLY_")}
    done = subprocess.run(
        [sys.executable, "-m", "onceonly.hub", *argv],
        cwd=cwd,
        env={**clean, **env},
        input="",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def one_line(ran: Ran) -> str:
    """The one line a failed command wrote to stderr."""
    assert ran.status != 0, ran.out
    assert "Traceback" not in ran.err
    lines = ran.err.splitlines()
    assert len(lines) == 1, ran.err
    return lines[0]


def record(ran: Ran) -> dict[str, str]:
    """The one JSON log record a failed command wrote to stderr."""
    line: dict[str, str] = json.loads(one_line(ran))
    assert line["level"] == "error"
    return line


def closed_port() -> int:
    with loopback_socket() as sock:  # bound, never listening: connections are refused
        return int(sock.getsockname()[1])


@pytest.fixture
def production(tmp_path: Path) -> dict[str, str]:
    return {
        "ONCEONLY_DATA_DIR": str(tmp_path / "data"),
        "ONCEONLY_MODE": "production",
        "ONCEONLY_ISSUER": "https://hub.example.gov",
        "ONCEONLY_AUDIT_ORIGIN": "hub.example.gov/audit",
        "ONCEONLY_DATABASE_URL": f"postgresql://hub@127.0.0.1:{closed_port()}/hub",
    }


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["migrate"], ["keys", "init"]])
def test_a_setting_that_does_not_parse_is_one_json_line(command: list[str], tmp_path: Path) -> None:
    env = {"ONCEONLY_DATA_DIR": str(tmp_path), "ONCEONLY_MAX_BODY_BYTES": "a lot"}
    line = record(onceonly(*command, cwd=tmp_path, env=env))
    assert "ONCEONLY_MAX_BODY_BYTES" in line["message"]
    assert "a lot" not in line["message"]  # a value may be a secret: never shown
    assert not (tmp_path / "keys").exists()


def test_serve_with_text_logs_says_it_in_one_text_line(tmp_path: Path) -> None:
    env = {"ONCEONLY_LOG_JSON": "false", "ONCEONLY_HOLIDAYS": "2026-12-24,someday"}
    line = one_line(onceonly("serve", "--port", "0", cwd=tmp_path, env=env))
    assert "ERROR" in line
    assert "the hub cannot start: ONCEONLY_HOLIDAYS (value 2)" in line


def test_production_serve_without_keys_names_them_in_one_line(
    tmp_path: Path, production: dict[str, str]
) -> None:
    message = record(onceonly("serve", "--port", "0", cwd=tmp_path, env=production))["message"]
    assert message.startswith("the hub cannot start: key files missing in ")
    assert "checkpoint.jwk" in message
    assert "run `onceonly keys init`" in message
    assert "cannot reach the database" in message


def test_serve_and_migrate_with_the_database_unreachable(
    tmp_path: Path, production: dict[str, str]
) -> None:
    assert onceonly("keys", "init", cwd=tmp_path, env=production).status == 0
    served = record(onceonly("serve", "--port", "0", cwd=tmp_path, env=production))
    assert served["message"].startswith("the hub cannot start: cannot reach the database")
    assert "key file" not in served["message"]
    migrated = record(onceonly("migrate", cwd=tmp_path, env=production))
    assert migrated["message"].startswith("cannot reach the database postgresql://hub@")


def test_serve_with_migrations_behind_says_run_migrate(tmp_path: Path) -> None:
    database = tmp_path / "behind.db"
    sqlite3.connect(database).close()  # a database, never migrated
    env = {
        "ONCEONLY_DATA_DIR": str(tmp_path),
        "ONCEONLY_DATABASE_URL": f"sqlite:///{database}",
        "ONCEONLY_AUTO_MIGRATE": "false",
    }
    message = record(onceonly("serve", "--port", "0", cwd=tmp_path, env=env))["message"]
    assert message.endswith("is not the newest: run `onceonly migrate`")


def test_keys_init_in_production_without_the_audit_origin(
    tmp_path: Path, production: dict[str, str]
) -> None:
    del production["ONCEONLY_AUDIT_ORIGIN"]
    message = record(onceonly("keys", "init", cwd=tmp_path, env=production))["message"]
    assert message.startswith("no keys created: production needs audit_origin")


def test_a_changed_audit_origin_is_refused_until_keys_init_renames_the_log(
    tmp_path: Path, production: dict[str, str]
) -> None:
    """The origin is kept in keys/audit-origin so that it never changes (decision 0089):
    another ONCEONLY_AUDIT_ORIGIN passed `config check`, and `serve` signed under it."""
    assert onceonly("keys", "init", cwd=tmp_path, env=production).status == 0
    kept = Path(production["ONCEONLY_DATA_DIR"]) / "keys" / "audit-origin"
    changed = {**production, "ONCEONLY_AUDIT_ORIGIN": "other.example/audit"}
    refusal = "but the audit log is named hub.example.gov/audit"

    checked = onceonly("config", "check", cwd=tmp_path, env=changed)
    assert checked.status == 1
    assert any(refusal in line for line in checked.err.splitlines()), checked.err
    served = record(onceonly("serve", "--port", "0", cwd=tmp_path, env=changed))["message"]
    assert served.startswith("the hub cannot start: audit_origin (ONCEONLY_AUDIT_ORIGIN) is")
    assert refusal in served
    assert "--change-audit-origin" in served
    initialized = record(onceonly("keys", "init", cwd=tmp_path, env=changed))["message"]
    assert initialized.startswith("no keys created: audit_origin")
    assert kept.read_text() == "hub.example.gov/audit\n"

    renamed = onceonly("keys", "init", "--change-audit-origin", cwd=tmp_path, env=changed)
    assert renamed.status == 0, renamed.err
    assert kept.read_text() == "other.example/audit\n"
    assert "verifier key for auditors: other.example/audit+" in renamed.out
    assert "every auditor must pin the new verifier key" in renamed.out
    checked = onceonly("config", "check", cwd=tmp_path, env=changed)
    assert not any("audit" in line for line in checked.err.splitlines()), checked.err


def test_a_development_hub_refuses_a_changed_audit_origin_too(tmp_path: Path) -> None:
    env = {"ONCEONLY_DATA_DIR": str(tmp_path / "data")}
    assert onceonly("keys", "init", cwd=tmp_path, env=env).status == 0  # 127.0.0.1/audit
    changed = {**env, "ONCEONLY_AUDIT_ORIGIN": "other.example/audit"}
    served = record(onceonly("serve", "--port", "0", cwd=tmp_path, env=changed))["message"]
    assert "but the audit log is named 127.0.0.1/audit" in served


@pytest.mark.parametrize(
    "command",
    [
        ["items", "list"],
        ["access", "list"],
        ["registry", "changes"],
        ["people", "list"],
        ["whoami"],
        ["login", "--username", "ada", "--password-stdin"],
    ],
)
def test_an_unreachable_hub_is_exit_2_and_one_line(command: list[str], tmp_path: Path) -> None:
    hub = f"http://127.0.0.1:{closed_port()}"
    env = {"ONCEONLY_DATA_DIR": str(tmp_path), "ONCEONLY_TOKEN": "not-a-real-token"}
    ran = onceonly(*command, "--hub", hub, cwd=tmp_path, env=env)
    assert ran.status == 2
    assert one_line(ran) == f"cannot reach the hub at {hub}: [Errno 111] Connection refused"


def test_version_is_the_installed_distribution(tmp_path: Path) -> None:
    from importlib.metadata import version

    ran = onceonly("--version", cwd=tmp_path, env={})
    assert (ran.status, ran.out.strip()) == (0, f"onceonly {version('onceonly')}")


def test_a_log_whose_origin_file_is_gone_keeps_the_name_its_checkpoints_give_it(
    tmp_path: Path,
) -> None:
    """A review (helper-185): with keys/audit-origin deleted (or a backup from before it
    was kept restored), another ONCEONLY_AUDIT_ORIGIN or issuer passed config check and
    serve signed the log under the new name, past every auditor's pinned key."""
    data = tmp_path / "data"
    with running_hub(
        database_url=f"sqlite:///{data / 'onceonly.db'}", data_dir=data, checkpoint_interval=0.1
    ) as hub:
        assert httpx.get(f"{hub.url}/v1/audit/entries").status_code == 401  # an entry
        wait_until(lambda: httpx.get(f"{hub.url}/v1/audit/checkpoint").text.count("\n") > 3)
        named = httpx.get(f"{hub.url}/v1/audit/checkpoint").text.split("\n", 1)[0]
    (data / "keys" / "audit-origin").unlink()
    env = {"ONCEONLY_DATA_DIR": str(data)}
    changed = {**env, "ONCEONLY_AUDIT_ORIGIN": "other.example/audit"}
    checked = onceonly("config", "check", cwd=tmp_path, env=changed)
    assert checked.status == 1
    refusal = f"the audit log is named {named} (its latest checkpoint)"
    assert any(refusal in line for line in checked.err.splitlines()), checked.err
    served = record(onceonly("serve", "--port", "0", cwd=tmp_path, env=changed))["message"]
    assert refusal in served
    assert (
        onceonly(
            "config", "check", cwd=tmp_path, env={**env, "ONCEONLY_AUDIT_ORIGIN": named}
        ).status
        == 0
    )
