"""`onceonly login|whoami|logout` and `onceonly people` against a real hub on loopback."""

import io
import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from joserfc.jwk import ECKey

from onceonly.adapters import public_jwks
from onceonly.hub.cli import main
from onceonly.hub.cli.admin_client import AdminError
from onceonly.hub.cli.people_commands import NO_TERMINAL

from tests.hub.cli.test_cli_terminal import environment
from tests.hub_testing import RunningHub, migrated_sqlite, running_hub

PASSWORD = "a long and careful passphrase"


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory: pytest.TempPathFactory, catalogued_sqlite_template: Path
) -> Iterator[RunningHub]:
    data_dir = tmp_path_factory.mktemp("hub")
    database_url = migrated_sqlite(catalogued_sqlite_template, data_dir)
    with running_hub(database_url=database_url, data_dir=data_dir) as hub:
        yield hub


@pytest.fixture
def cli(hub: RunningHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI pointed at the hub, with a session file of its own and no other credential."""
    session_file = tmp_path / "session.json"
    monkeypatch.setenv("ONCEONLY_HUB_URL", hub.url)
    monkeypatch.setenv("ONCEONLY_SESSION_FILE", str(session_file))
    monkeypatch.setenv("ONCEONLY_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.delenv("ONCEONLY_TOKEN", raising=False)
    monkeypatch.delenv("ONCEONLY_ADMIN_TOKEN", raising=False)
    return session_file


def run(
    args: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stdin: str = "",
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    status = main(args)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_an_administrator_creates_a_steward_who_signs_in_and_out(
    hub: RunningHub,
    cli: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ONCEONLY_ADMIN_TOKEN", hub.keys.admin_token)  # break-glass, once
    status, out, err = run(
        ["people", "put", "sara", "--role", "steward:tax", "--password-stdin"],  # sets it
        monkeypatch,
        capsys,
        stdin=PASSWORD + "\n",
    )
    assert status == 0, err
    assert json.loads(out)["roles"] == [{"role": "steward", "department": "tax"}]
    monkeypatch.delenv("ONCEONLY_ADMIN_TOKEN")

    status, out, err = run(
        ["login", "--username", "sara", "--password-stdin"], monkeypatch, capsys, stdin=PASSWORD
    )
    assert status == 0, err
    assert "signed in as sara (steward of tax)" in out
    assert stat.S_IMODE(cli.stat().st_mode) == 0o600
    assert PASSWORD not in cli.read_text()
    token = json.loads(cli.read_text())[hub.url]["token"]

    status, out, _ = run(["whoami"], monkeypatch, capsys)
    assert (status, json.loads(out)["username"]) == (0, "sara")

    status, _, err = run(["people", "list"], monkeypatch, capsys)  # a steward is no administrator
    assert status == 1
    assert "not an administrator" in err

    status, out, _ = run(["logout"], monkeypatch, capsys)
    assert (status, out.strip()) == (0, "signed out")
    me = httpx.get(f"{hub.url}/v1/people/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 401  # ended at the hub, not only forgotten here
    status, _, err = run(["whoami"], monkeypatch, capsys)
    assert status == 1
    assert "not signed in" in err


def test_a_break_glass_token_set_while_signed_in_is_named_as_passed_over(
    hub: RunningHub,
    cli: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A sign-in comes before ONCEONLY_ADMIN_TOKEN (a person's commands are theirs). A
    newcomer who set the token while signed in read only 'only the break-glass token
    may do this', as if the token were refused (helper-140): the CLI says which it used."""
    monkeypatch.setenv("ONCEONLY_ADMIN_TOKEN", hub.keys.admin_token)
    status, _, err = run(
        ["people", "put", "rein", "--role", "steward:tax", "--password-stdin"],
        monkeypatch,
        capsys,
        stdin=PASSWORD + "\n",
    )
    assert status == 0, err
    assert "ONCEONLY_ADMIN_TOKEN" not in err  # no sign-in: the token is what is used
    monkeypatch.delenv("ONCEONLY_ADMIN_TOKEN")
    status, _, err = run(
        ["login", "--username", "rein", "--password-stdin"], monkeypatch, capsys, stdin=PASSWORD
    )
    assert status == 0, err
    monkeypatch.setenv("ONCEONLY_ADMIN_TOKEN", hub.keys.admin_token)

    status, out, err = run(["whoami"], monkeypatch, capsys)
    assert (status, json.loads(out)["username"]) == (0, "rein")
    assert f"using the sign-in of rein at {hub.url}, not ONCEONLY_ADMIN_TOKEN" in err
    assert "onceonly logout" in err


def test_a_wrong_password_is_refused_and_nothing_is_stored(
    hub: RunningHub,
    cli: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, _, err = run(
        ["login", "--username", "nobody", "--password-stdin"], monkeypatch, capsys, stdin="x" * 12
    )
    assert status == 1
    assert "sign-in failed" in err.lower()
    assert not cli.exists()


def test_totp_enrol_asks_for_the_password(
    hub: RunningHub,
    cli: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ONCEONLY_ADMIN_TOKEN", hub.keys.admin_token)
    status, _, err = run(
        ["people", "put", "tiina", "--role", "auditor", "--set-password", "--password-stdin"],
        monkeypatch,
        capsys,
        stdin=PASSWORD + "\n",
    )
    assert status == 0, err
    monkeypatch.delenv("ONCEONLY_ADMIN_TOKEN")
    status, _, err = run(
        ["login", "--username", "tiina", "--password-stdin"], monkeypatch, capsys, stdin=PASSWORD
    )
    assert status == 0, err

    status, out, err = run(
        ["people", "totp-enrol", "--password-stdin"], monkeypatch, capsys, stdin="not it\n"
    )
    assert (status, out) == (1, "")
    assert "HTTP 401" in err

    prompts: list[str] = []

    def getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return PASSWORD

    monkeypatch.setattr("getpass.getpass", getpass)
    status, out, err = run(["people", "totp-enrol"], monkeypatch, capsys)
    assert status == 0, err
    assert prompts == ["password: "]
    enrolment = json.loads(out)
    assert enrolment["otpauth_uri"].startswith("otpauth://totp/")
    assert f"secret={enrolment['secret']}" in enrolment["otpauth_uri"]


def test_a_password_asked_with_no_terminal_is_a_refusal_that_names_password_stdin(
    hub: RunningHub, tmp_path: Path
) -> None:
    """The real command in a session of its own (no controlling terminal), standard
    input empty, as from a script or over ssh without a tty: it printed an EOFError
    traceback; now one line, exit 1, and no person is changed."""
    env = environment(hub, tmp_path)  # the break-glass token, nothing else
    for argv, said in [
        (["people", "put", "ada", "--role", "administrator", "--set-password"], NO_TERMINAL),
        (["login"], "no username given: name it with --username"),
        (["login", "--username", "ada"], NO_TERMINAL),
    ]:
        ran = subprocess.run(
            [sys.executable, "-m", "onceonly.hub", *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            start_new_session=True,  # no /dev/tty to ask on
            timeout=60,
        )
        assert (ran.returncode, ran.stderr) == (1, said + "\n"), argv
        assert ran.stdout in ("", "username: "), argv  # input()'s prompt, then EOF
    with hub.admin() as admin, pytest.raises(AdminError) as refused:
        admin.call("GET", "/v1/admin/people/ada")
    assert refused.value.status == 404


def test_an_administrator_disables_and_enables_a_client(
    hub: RunningHub,
    cli: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = ECKey.generate_key("P-256", auto_kid=True)
    with hub.admin() as admin:
        admin.put_client("tax-cli-adapter", department="tax", jwks=public_jwks(key))
    monkeypatch.setenv("ONCEONLY_ADMIN_TOKEN", hub.keys.admin_token)
    status, out, err = run(["client", "disable", "tax-cli-adapter"], monkeypatch, capsys)
    assert status == 0, err
    assert json.loads(out)["status"] == "disabled"
    status, _, err = run(["client", "enable", "tax-cli-adapter"], monkeypatch, capsys)
    assert status == 1  # tokens it held when disabled may still live
    assert "HTTP 409" in err
    assert "enable it after" in err
    status, _, err = run(["client", "disable", "no-such-client"], monkeypatch, capsys)
    assert (status, "HTTP 404" in err) == (1, True)
