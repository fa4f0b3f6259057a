from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import pytest
import trustme

from onceonly.adapters import RecordStore, load_config
from onceonly.adapters.cli import add_commands
from onceonly.hub.cli.servers import ServerTLS, loopback_socket, serve_in_thread

from tests.adapters.adapter_testing import ITEM, RECORD, SCHEMA, SUBJECT, HubDouble, write_config


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="onceonly")
    add_commands(parser.add_subparsers(required=True))
    args = parser.parse_args(["adapter", *argv])
    code: int = args.func(args)
    return code


@pytest.fixture
def config_path(tmp_path: Path, hub: HubDouble) -> Path:
    return write_config(tmp_path, hub_url=hub.url)


def stored(config_path: Path, subject: str) -> dict[str, object] | None:
    with RecordStore(load_config(config_path).store_path) as store:
        return store.get(ITEM, subject)


def test_jwks_prints_the_public_key_and_creates_it_once(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("jwks", "--config", str(config_path)) == 0
    first = json.loads(capsys.readouterr().out)
    run("jwks", "--config", str(config_path))
    second = json.loads(capsys.readouterr().out)

    assert first == second
    assert "d" not in first["keys"][0]


def test_import_csv_stores_records_validated_against_the_latest_schema(
    config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_file = tmp_path / "in.csv"
    csv_file.write_text(f"subject,street,city,postal_code\n{SUBJECT},Pikk 1,Tallinn,10123\n")

    code = run("import", "--config", str(config_path), "--item", ITEM, "--csv", str(csv_file))

    assert code == 0
    assert capsys.readouterr().out.strip() == f"imported 1 record(s) of {ITEM} v1"
    assert stored(config_path, SUBJECT) == RECORD


def test_import_failure_exits_1_with_a_row_by_row_report(
    config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_file = tmp_path / "in.csv"
    csv_file.write_text("subject,street,city\n1,Pikk 1,Tallinn\n2,Pikk 2,\n")

    code = run("import", "--config", str(config_path), "--item", ITEM, "--csv", str(csv_file))

    assert code == 1
    assert "row 3: (record): missing required property 'city'" in capsys.readouterr().err
    assert stored(config_path, "1") is None


def test_put_stores_one_valid_record(config_path: Path) -> None:
    record = json.dumps(RECORD)

    code = run(
        "put", "--config", str(config_path), "--item", ITEM, "--subject", "7", "--record", record
    )

    assert code == 0
    assert stored(config_path, "7") == RECORD


def test_put_refuses_an_item_missing_from_the_config(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(
        "put", "--config", str(config_path), "--item", "x.y", "--subject", "7", "--record", "{}"
    )

    assert code == 1
    assert "not configured" in capsys.readouterr().err


def test_import_refuses_an_item_read_from_another_source(
    tmp_path: Path, hub: HubDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, hub_url=hub.url, items=())
    path.write_text(
        path.read_text() + f'[items."{ITEM}"]\nsource = "python"\ncallable = "json:loads"\n'
    )
    csv_file = tmp_path / "in.csv"
    csv_file.write_text(f"subject,street,city\n{SUBJECT},Pikk 1,Tallinn\n")

    code = run("import", "--config", str(path), "--item", ITEM, "--csv", str(csv_file))

    assert code == 1
    assert "reads its python source: only store items are fed" in capsys.readouterr().err


def test_import_jsonl_failure_reports_every_refused_row(
    config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        {"subject": "1", "record": RECORD},
        {"subject": "2", "record": {"street": "Pikk 2"}},
        {"subject": "1", "record": RECORD},
    ]
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")

    code = run("import", "--config", str(config_path), "--item", ITEM, "--jsonl", str(jsonl))

    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert [line.split(":")[0] for line in err] == ["row 2", "row 3", "row 4", "error"]
    assert "missing required property 'city'" in err[0]
    assert "error: 3 row(s) refused; nothing imported" in err[-1]
    assert stored(config_path, "1") is None


def test_check_passes_when_hub_key_sources_and_schemas_are_in_order(
    tmp_path: Path, hub: HubDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "address.json").write_text(json.dumps(SCHEMA))
    path = write_config(tmp_path, hub_url=hub.url)
    path.write_text(path.read_text() + 'schema_file = "address.json"\n')
    run("jwks", "--config", str(path))
    capsys.readouterr()

    code = run("check", "--config", str(path))

    lines = capsys.readouterr().out.splitlines()
    assert code == 0, lines
    assert [line.split(": ")[0] for line in lines] == [
        f"hub {hub.url}",
        f"client key {load_config(path).key_path}",
        f"source {ITEM} (store)",
        f"schema {ITEM}",
    ]
    assert all(": ok" in line for line in lines)
    assert lines[2].endswith(f"(0 record(s) of {ITEM} in the store)")
    assert lines[3].endswith("(address.json matches the hub's v1)")


def test_check_reports_each_failure_on_its_own_line_and_exits_1(
    tmp_path: Path, hub: HubDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    changed = {**SCHEMA, "required": ["street"]}
    (tmp_path / "address.json").write_text(json.dumps(changed))
    legacy_db = tmp_path / "legacy.db"
    sqlite3.connect(legacy_db).close()
    path = write_config(tmp_path, hub_url=hub.url, items=())
    path.write_text(
        path.read_text()
        + f'[items."{ITEM}"]\nschema_file = "address.json"\nsource = "sql"\n'
        + f'url = "sqlite:///{legacy_db}"\nquery = "SELECT * FROM people WHERE c = :subject"\n'
        + '[items."x.unknown"]\nsource = "rest"\nurl = "http://127.0.0.1:1/p/{subject}"\n'
    )

    code = run("check", "--config", str(path))

    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines[0] == f"hub {hub.url}: ok (issuer {hub.url})"
    assert lines[1].endswith("FAILED: missing; `onceonly adapter jwks` creates it")
    assert lines[2].startswith(f"source {ITEM} (sql): FAILED: the database query failed")
    assert "no such table: people" in lines[2]
    assert lines[3].endswith("address.json differs from the hub's v1 at /required/1")
    assert lines[4].startswith("source x.unknown (rest): FAILED: cannot reach http://127.0.0.1:1/")
    assert lines[5] == "schema x.unknown: FAILED: the hub's registry has no such item"


def test_check_says_the_hubs_certificate_is_not_trusted_and_how_to_trust_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub whose certificate comes from a private CA the adapter does not trust, on
    real TLS on loopback: named as such, with the fix, which then works (decision 0076).
    It said "cannot reach the hub: ConnectError", as for a hub that is away."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    leaf = ca.issue_cert("127.0.0.1")
    leaf.private_key_pem.write_to_path(str(tmp_path / "hub-key.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "hub.pem"))
    double = HubDouble()
    tls = ServerTLS(tmp_path / "hub.pem", tmp_path / "hub-key.pem")
    sock = loopback_socket()
    double.url = f"https://127.0.0.1:{sock.getsockname()[1]}"
    path = write_config(tmp_path, hub_url=double.url)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with serve_in_thread(double.app(), sock, tls=tls):
        assert run("check", "--config", str(path)) == 1
        untrusted = capsys.readouterr().out.splitlines()[0]
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
        run("check", "--config", str(path))
        trusted = capsys.readouterr().out.splitlines()[0]

    assert untrusted.startswith(
        f"hub {double.url}: FAILED: the hub's TLS certificate is not trusted (unable to get"
    ), untrusted
    assert untrusted.endswith(
        "give the adapter the certificate authority that issued it, a PEM file, in SSL_CERT_FILE"
    )
    assert trusted == f"hub {double.url}: ok (issuer {double.url})"


def test_check_reports_a_hub_that_does_not_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, hub_url="http://127.0.0.1:1")

    code = run("check", "--config", str(path))

    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines[0] == "hub http://127.0.0.1:1: FAILED: cannot reach the hub: ConnectError"
    assert lines[3].startswith(f"schema {ITEM}: FAILED: cannot reach the hub")


# --- hostile files (review 161): a row's error and exit 1, never a traceback -----------

_JSONL_LINE = '{"subject": "1", "record": {"street": "Pikk 1", "city": "T", "floor": %s}}'


@pytest.mark.parametrize(
    ("content", "told"),
    [
        ((_JSONL_LINE % ("1" * 5000)).encode(), "row 2: not JSON: a number has too many digits"),
        ((_JSONL_LINE % ("[" * 5000 + "]" * 5000)).encode(), "row 2: not JSON: nested too deep"),
        (b'{"subject": "1", "record": {"street": "P\xffikk", "city": "T"}}', "row 2: not UTF-8"),
        ((_JSONL_LINE % "NaN").encode(), "row 2: not JSON: NaN is not JSON"),
        ((_JSONL_LINE % "-Infinity").encode(), "row 2: not JSON: -Infinity is not JSON"),
        # review 167: the last of the names was stored; the hub refuses such an answer
        ((_JSONL_LINE % '1, "floor": 2').encode(), "row 2: not JSON: an object repeats"),
        (
            b'{"subject": "1", "subject": "3", "record": {"street": "P", "city": "T"}}',
            "row 2: not JSON: an object repeats a member name",
        ),
        # review 167: stored, and the hub refused every answer with it (over 1 MiB)
        (
            b'{"subject": "1", "record": {"street": "' + b"a" * 2**20 + b'", "city": "T"}}',
            "row 2: (record): its answer would be",
        ),
    ],
    ids=[
        "5000-digits",
        "5000-deep",
        "not-utf8",
        "nan",
        "infinity",
        "repeated-name",
        "repeated-subject",
        "answer-over-1-mib",
    ],
)
def test_import_jsonl_refuses_a_hostile_line_as_a_row(
    config_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    told: str,
) -> None:
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_bytes(json.dumps({"subject": "2", "record": RECORD}).encode() + b"\n" + content)

    code = run("import", "--config", str(config_path), "--item", ITEM, "--jsonl", str(jsonl))

    err = capsys.readouterr().err
    assert code == 1
    assert told in err
    assert "error: 1 row(s) refused; nothing imported" in err
    assert stored(config_path, "2") is None


@pytest.mark.parametrize(
    ("content", "told"),
    [
        (b"subject,street,city\n1,Pikk 1,T\n2," + b"a" * 200_000 + b",T\n", "row 3: not CSV"),
        (b"subject,street,city\n1,Pikk 1,T\n2,P\xffikk,T\n", "row 3: not UTF-8"),
        (b"subject,str\xffeet,city\n1,Pikk 1,T\n", "row 1: not UTF-8"),
        (b"subject,street,city,floor\n1,Pikk 1,T,9007199254740993\n", "row 2: (record): has a"),
    ],
    ids=["cell-over-128-kib", "not-utf8-cell", "not-utf8-header", "integer-past-2^53"],
)
def test_import_csv_refuses_a_hostile_row_as_a_row(
    config_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    told: str,
) -> None:
    csv_file = tmp_path / "in.csv"
    csv_file.write_bytes(content)

    code = run("import", "--config", str(config_path), "--item", ITEM, "--csv", str(csv_file))

    err = capsys.readouterr().err
    assert code == 1
    assert told in err
    assert stored(config_path, "1") is None


@pytest.mark.parametrize(
    ("record", "told"),
    [
        ('{"street": "P", "city": "T", "floor": 9007199254740993}', "no canonical JSON form"),
        ('{"street": "P", "city": "T", "geo": {"lat": 1e400}}', "not JSON: a number is beyond"),
        ('{"street": "P", "city": "T", "geo": {"lat": NaN}}', "--record is not JSON: NaN"),
        ('{"street": "P", "city": "T", "geo": {"lat": Infinity}}', "not JSON: Infinity"),
        ('{"street": "P", "city": "T", "geo": ' + "[" * 70 + "]" * 70 + "}", "deeper than 63"),
        ('{"street": "P", "city": "T", "city": "U"}', "--record is not JSON: an object repeats"),
        ('{"street": "' + "ä" * 2**19 + '", "city": "T"}', "the hub refuses answers over"),
    ],
    ids=["integer-past-2^53", "1e400", "nan", "infinity", "70-deep", "repeated", "over-1-mib"],
)
def test_put_refuses_what_serving_would_refuse(
    config_path: Path, capsys: pytest.CaptureFixture[str], record: str, told: str
) -> None:
    """Such records were stored, and every query for the subject was then answered 502
    (serving checks depth, jsonschema-rs and RFC 8785's canonical form)."""
    code = run(
        "put", "--config", str(config_path), "--item", ITEM, "--subject", "7", "--record", record
    )

    assert code == 1
    assert told in capsys.readouterr().err
    assert stored(config_path, "7") is None
