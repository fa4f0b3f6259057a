"""``audit verify`` prints a verdict in words, not data: it offers no ``--output``
(an operator's review: ``--output json`` was accepted and text printed)."""

import pytest

from onceonly.hub.cli import main


@pytest.mark.parametrize("option", [["--output", "json"], ["-o", "table"]])
def test_verify_takes_no_output_option(
    option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["audit", "verify", "--hub", "http://127.0.0.1:9", "--key", "k", *option])
    assert stopped.value.code != 0
    assert "unrecognized arguments" in capsys.readouterr().err


def test_verify_help_does_not_offer_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["audit", "verify", "--help"])
    assert "--output" not in capsys.readouterr().out
