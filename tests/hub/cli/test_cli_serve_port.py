"""``serve --port`` is a TCP port, 1 to 65535 (or 0, any free one), checked when the
command line is read (an operator's review: 99999 listened on 34463 and advertised
:99999; -1 exited 3 with uvicorn's message)."""

import pytest

from tests.hub.cli.conftest import Onceonly


@pytest.mark.parametrize("port", ["99999", "65536", "-1", "eighty"])
def test_a_port_out_of_range_is_a_usage_error(
    onceonly: Onceonly, port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        onceonly("serve", "--port", port)
    assert stopped.value.code == 1
    assert "argument --port: " in capsys.readouterr().err.splitlines()[-1]
