"""The checkpointer while its rounds fail (the database away): the first failure with
its traceback, each later one in a line with the count, and a line when a round
succeeds again; before, every round (one a second) logged an ERROR with a traceback,
about 100 MB an hour."""

import asyncio
import logging
from pathlib import Path

import pytest

from tests.hub.audit.test_audit_checkpoints import (  # noqa: F401  # hub_log: a fixture
    _append,
    _checkpointer,
    _refuse_checkpoints,
    _sizes,
    _until,
    hub_log,
)


def _failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("audit checkpoint failed")]


@pytest.mark.anyio
async def test_rounds_that_keep_failing_log_one_traceback_then_a_count(
    database_url: str,
    tmp_path: Path,
    hub_log: pytest.LogCaptureFixture,  # noqa: F811  # the fixture imported above
) -> None:
    async with _checkpointer(database_url, tmp_path, interval=0.05) as (engine, checkpointer):
        await _append(engine, 3)
        _refuse_checkpoints(database_url, refuse=True)
        await checkpointer.start()
        await asyncio.wait_for(_until(lambda: len(_failures(hub_log)) >= 4), 10)
        _refuse_checkpoints(database_url, refuse=False)
        await asyncio.wait_for(_until(lambda: _sizes(database_url) == [3]), 10)
        await asyncio.wait_for(_until(lambda: "succeed again" in hub_log.text), 10)
    first, *later = _failures(hub_log)
    assert (first.levelno, first.exc_info is not None) == (logging.ERROR, True)
    assert {(r.levelno, r.exc_info) for r in later} == {(logging.WARNING, None)}
    assert later[0].getMessage().startswith("audit checkpoint failed again (")
    assert ", 2 rounds in a row;" in later[0].getMessage()
    assert f"after {len(later) + 1} failed rounds" in hub_log.text
