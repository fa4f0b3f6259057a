"""``keys rotate --activate-after`` is bounded (0 to 30 days) and checked before
anything is written; a ``state.json`` that cannot be used is one line from ``keys
show`` and ``keys rotate``, never a traceback (an operator's review: a delay of 10^20
seconds was written, then crashed every later ``keys show`` and ``keys rotate``)."""

import json
from pathlib import Path

import pytest

from tests.hub.cli.conftest import Onceonly


@pytest.fixture
def state(onceonly: Onceonly, tmp_path: Path) -> Path:
    """The signing keys' state.json of a development hub's fresh keys."""
    assert onceonly("keys", "init")[0] == 0
    return tmp_path / "data" / "keys" / "signing" / "state.json"


@pytest.mark.parametrize("delay", ["99999999999999999999", "-1", "2592001", "abc", "1.5"])
def test_a_delay_out_of_bounds_writes_nothing(
    onceonly: Onceonly, state: Path, delay: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = state.read_text()
    with pytest.raises(SystemExit) as stopped:
        onceonly("keys", "rotate", "--activate-after", delay)
    assert stopped.value.code != 0
    assert "--activate-after" in capsys.readouterr().err
    assert state.read_text() == before


@pytest.mark.parametrize("delay", ["0", "2592000"])
def test_a_delay_within_bounds_rotates(onceonly: Onceonly, state: Path, delay: str) -> None:
    status, out, err = onceonly("keys", "rotate", "--activate-after", delay)
    assert (status, err) == (0, "")
    assert f"(+{delay} s)" in out
    assert len(json.loads(state.read_text())["keys"]) == 2


@pytest.mark.parametrize(
    "written",
    [
        {"keys": [{"kid": "k", "active_from": 10**20, "retire_at": None}]},
        {"keys": [{"kid": "k", "active_from": -5}]},
        {"keys": [{"kid": "k", "active_from": "soon"}]},
        {"keys": [{"kid": "k"}]},
        {"nothing": []},
    ],
)
def test_a_state_that_cannot_be_used_is_one_line(
    onceonly: Onceonly, state: Path, written: object
) -> None:
    state.write_text(json.dumps(written))
    for command in (("keys", "show", "-o", "table"), ("keys", "show"), ("keys", "rotate")):
        status, out, err = onceonly(*command)
        assert status == 1, (command, out)
        assert len(err.splitlines()) == 1, err
        assert f"{state} cannot be used" in err
    assert json.loads(state.read_text()) == written
