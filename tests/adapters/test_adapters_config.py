from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from adapters import ConfigError, load_config, load_or_create_key, public_jwks

from adapter_testing import ITEM, write_config


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
    path.write_text('department = "Civil Registry"\nhub_url = "http://h"\ndata_dir = "d"\n')

    with pytest.raises(ConfigError, match=r"bad\.toml: department: String should match"):
        load_config(path)


def test_load_config_refuses_an_unknown_source_kind(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        'department = "tax"\nhub_url = "http://h"\ndata_dir = "d"\n'
        '[items."person.identity"]\nsource = "ftp"\n'
    )

    with pytest.raises(ConfigError, match=r"items\.person\.identity\.source"):
        load_config(path)


def test_load_config_refuses_listen_without_a_port(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('department = "tax"\nhub_url = "http://h"\ndata_dir = "d"\nlisten = "x"\n')

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
