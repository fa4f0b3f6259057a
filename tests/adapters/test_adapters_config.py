from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from onceonly.adapters import (
    ConfigError,
    RecordStore,
    StoreItem,
    load_config,
    load_or_create_key,
    public_jwks,
)

from tests.adapters.adapter_testing import ITEM, write_config


def test_load_config_resolves_data_dir_against_the_config_file(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, hub_url="http://127.0.0.1:8000/"))

    assert config.department == "civil-registry"
    assert config.hub_url == "http://127.0.0.1:8000"
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 0)
    assert config.data_dir == (tmp_path / "var/adapter").resolve()
    assert config.key_path == config.data_dir / "client-key.jwk"
    assert config.store_path == config.data_dir / "records.db"
    assert set(config.items) == {ITEM}


def test_load_config_names_the_file_and_the_invalid_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('department = "Civil Registry"\nhub_url = "https://h"\ndata_dir = "d"\n')

    with pytest.raises(ConfigError, match=r"bad\.toml: department: String should match"):
        load_config(path)


def test_load_config_refuses_an_unknown_source_kind(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        'department = "tax"\nhub_url = "https://h"\ndata_dir = "d"\n'
        '[items."person.identity"]\nsource = "ftp"\n'
    )

    with pytest.raises(ConfigError, match=r'items\."person\.identity": source must be one of'):
        load_config(path)


def write(tmp_path: Path, table: str) -> Path:
    path = tmp_path / "dept.toml"
    head = 'department = "tax"\nhub_url = "https://h"\ndata_dir = "d"\n[items."tax.debt"]\n'
    path.write_text(head + table)
    return path


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'source = "sql"\nurl = "sqlite://"\nquery = "SELECT * FROM t WHERE c = \'x\'"',
            r'items\."tax\.debt"\.query: the query must bind exactly :subject \(found none\)',
        ),
        (
            'source = "sql"\nurl = "sqlite://"\nquery = "SELECT * FROM t WHERE c = :id"',
            r"must bind exactly :subject \(found :id\)",
        ),
        (
            'source = "sql"\nurl = "postgresql://u:pw@db/x"\nquery = "SELECT :subject"',
            r'items\."tax\.debt"\.url: holds a password: name an environment variable',
        ),
        (
            'source = "sql"\nquery = "SELECT :subject"',
            r'items\."tax\.debt": give exactly one of url and url_env',
        ),
        (
            'source = "sql"\nurl = "sqlite://"\nquery = "SELECT :subject"\nmany = true',
            "many = true needs a columns table",
        ),
        (
            'source = "sql"\nurl = "sqlite://"\nquery = "SELECT :subject"\n'
            '[items."tax.debt".columns]\n"a[].b" = "c"',
            "an array of rows needs many = true",
        ),
        (
            'source = "sql"\nurl = "sqlite://"\nquery = "SELECT :subject"\n'
            '[items."tax.debt".columns]\na = "x"\n"a.b" = "y"',
            "'a' is both a value and an object",
        ),
        ('source = "rest"\nurl = "http://legacy/people"', r"put \{subject\} in the url"),
        (
            'source = "rest"\nurl = "http://legacy/{subject}/{year}"',
            r"the only placeholder is \{subject\} \(found \{year\}\)",
        ),
        (
            'source = "rest"\nurl = "http://legacy/{subject}"\n'
            'headers = { Authorization = "Bearer s3cret" }',
            r'items\."tax\.debt"\.headers: Authorization: secrets go in header_env',
        ),
        (
            'source = "rest"\nurl = "http://legacy/{subject}"\nbody = { id = "{subject}" }',
            "body: only with method = 'POST'",
        ),
        (
            'source = "rest"\nurl = "http://legacy/{subject}"\n'
            '[items."tax.debt".fields]\nstreet = "addr.line1"',
            "street: 'addr.line1' is not a JSON pointer",
        ),
        ('source = "python"\ncallable = "no colon"', r'items\."tax\.debt"\.callable: String'),
        ('source = "store"\nquery = "x"', r'items\."tax\.debt"\.query: Extra inputs'),
    ],
)
def test_load_config_names_the_file_the_item_and_the_invalid_source_setting(
    tmp_path: Path, table: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=r"dept\.toml: .*" + message):
        load_config(write(tmp_path, table))


def test_a_table_without_source_reads_the_store(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))

    assert config.items["tax.debt"] == StoreItem()


def test_schema_file_resolves_against_the_config_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'schema_file = "schemas/debt.json"'))

    assert config.items["tax.debt"].schema_file == (tmp_path / "schemas/debt.json").resolve()


def test_opening_a_python_source_that_cannot_be_imported_names_the_item(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'source = "python"\ncallable = "no_such_module:f"'))

    with (
        RecordStore(tmp_path / "s.db") as store,
        pytest.raises(
            ConfigError, match=r"items\.\"tax\.debt\"\.callable: cannot import 'no_such_module:f'"
        ),
    ):
        config.open_sources(store=store)


@pytest.mark.parametrize("name", ["civil-registry", "tax", "social-welfare"])
def test_the_shipped_department_configs_load(name: str) -> None:
    config = load_config(Path(__file__).parents[2] / "config" / f"{name}.toml")

    assert config.department == name


def test_load_config_refuses_listen_without_a_port(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('department = "tax"\nhub_url = "https://h"\ndata_dir = "d"\nlisten = "x"\n')

    with pytest.raises(ConfigError, match="listen: expected 'host:port'"):
        load_config(path)


def test_key_file_is_created_with_mode_0600_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "client-key.jwk"

    created = load_or_create_key(path)
    loaded = load_or_create_key(path)

    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert loaded.kid == created.kid == created.thumbprint()
    assert loaded.as_dict(private=True) == created.as_dict(private=True)


def test_public_jwks_holds_only_the_public_half(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "k.jwk")

    (jwk,) = public_jwks(key)["keys"]

    assert "d" not in jwk
    assert (jwk["kid"], jwk["alg"], jwk["use"], jwk["crv"]) == (key.kid, "ES256", "sig", "P-256")


def test_a_key_file_that_is_not_a_private_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.jwk"
    path.write_text("{}")

    with pytest.raises(ConfigError, match="not a private EC JWK"):
        load_or_create_key(path)
