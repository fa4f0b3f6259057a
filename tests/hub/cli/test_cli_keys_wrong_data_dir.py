"""Key commands pointed at a data directory with no keys refuse in one line, in
development too, and make nothing (an operator's review: ``keys rotate`` made a whole
new key set and reported rotating "the key it replaces", ``keys rotate-checkpoint``
made a key and retired it at once, ``keys show`` printed ``{"keys": []}``)."""

from pathlib import Path

import pytest

from tests.hub.cli.conftest import Onceonly


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(("keys", "rotate"), id="rotate"),
        pytest.param(("keys", "rotate-derivation"), id="rotate-derivation"),
        pytest.param(("keys", "show"), id="show"),
        pytest.param(("keys", "show", "-o", "table"), id="show-table"),
    ],
)
def test_no_keys_is_one_line_and_nothing_is_made(
    onceonly: Onceonly, tmp_path: Path, command: tuple[str, ...]
) -> None:
    data = tmp_path / "wrong"
    status, out, err = onceonly(*command, data_dir=str(data), log_json="false")
    assert (status, out) == (1, "")
    (line,) = err.splitlines()
    assert line.endswith(
        f"ERROR onceonly.hub.cli: no keys in {data / 'keys'}: run `onceonly keys init` first,"
        " or set ONCEONLY_DATA_DIR to the hub's"
    )
    assert not data.exists()


def test_a_checkpoint_key_that_is_not_there_is_not_made_and_retired(
    onceonly: Onceonly, tmp_path: Path
) -> None:
    data = tmp_path / "wrong"
    status, out, err = onceonly("keys", "rotate-checkpoint", data_dir=str(data), log_json="false")
    assert (status, out) == (1, "")
    (line,) = err.splitlines()
    assert line.endswith(
        f"not rotated: key file {data / 'keys' / 'checkpoint.jwk'} is missing;"
        " run `onceonly keys init`"
    )
    assert not data.exists()


def test_keys_made_by_keys_init_are_rotated(onceonly: Onceonly) -> None:
    assert onceonly("keys", "init")[0] == 0
    status, out, err = onceonly("keys", "rotate", "--activate-after", "0")
    assert (status, err) == (0, "")
    assert onceonly("keys", "rotate-checkpoint")[0] == 0
    status, out, _ = onceonly("keys", "show")
    assert status == 0
    assert out.count('"kid"') == 2
