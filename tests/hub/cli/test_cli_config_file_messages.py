"""``ONCEONLY_CONFIG`` naming a directory, or a file that is not TOML, is one line that
says which (an operator's review: a directory was "no such file", and a TOML syntax
error did not name the file)."""

from pathlib import Path

from tests.hub.cli.conftest import Onceonly


def test_a_directory_is_named_a_directory(onceonly: Onceonly, tmp_path: Path) -> None:
    status, out, err = onceonly("config", "check", config=str(tmp_path))
    assert (status, out) == (1, "")
    assert err == f"settings: ONCEONLY_CONFIG={tmp_path}: a directory, not a TOML file\n"


def test_a_toml_syntax_error_names_the_file(onceonly: Onceonly, tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text("log_level = [\n")
    status, out, err = onceonly("config", "check", config=str(config))
    assert (status, out) == (1, "")
    assert err.startswith(f"settings: ONCEONLY_CONFIG={config}: not TOML: ")
    assert len(err.splitlines()) == 1
