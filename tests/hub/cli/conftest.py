"""What the CLI's tests share."""

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from onceonly.hub.cli import main

Onceonly = Callable[..., tuple[int, str, str]]
"""``onceonly ARGS`` with the settings ``name=value``: (exit status, stdout, stderr)."""


@pytest.fixture
def onceonly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Onceonly:
    """``onceonly ARGS`` in-process, with ``ONCEONLY_*`` = the keyword arguments only
    (``ONCEONLY_DATA_DIR`` is ``<tmp_path>/data`` unless given)."""

    def command(*args: str, **settings: str) -> tuple[int, str, str]:
        for variable in [v for v in os.environ if v.upper().startswith("ONCEONLY_")]:
            monkeypatch.delenv(variable)
        # serve sets ONCEONLY_ISSUER from --host and --port when it is unset: undone after
        # the test (monkeypatch undoes only what it touched: set, then removed), or a later
        # test in this process read that issuer
        monkeypatch.setenv("ONCEONLY_ISSUER", "")
        monkeypatch.delenv("ONCEONLY_ISSUER")
        monkeypatch.setenv("ONCEONLY_DATA_DIR", str(tmp_path / "data"))
        for name, value in settings.items():
            monkeypatch.setenv(f"ONCEONLY_{name.upper()}", value)
        status = main(list(args))
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return command
