from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from adapters import RecordStore, load_config
from adapters.cli import add_commands

from adapter_testing import ITEM, RECORD, SUBJECT, HubDouble, write_config


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
