"""A test's view of one of the hub's loggers: every record once, whatever the hub's
logging configuration (``onceonly.hub.kit.logs`` may stop propagation to the root)."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def records_of(
    caplog: pytest.LogCaptureFixture, name: str, level: int
) -> Iterator[pytest.LogCaptureFixture]:
    """caplog's handler on the logger ``name``, at ``level``, with that logger's
    propagation off while it runs (so no record reaches caplog twice)."""
    logger = logging.getLogger(name)
    logger.addHandler(caplog.handler)
    propagates, logger.propagate = logger.propagate, False
    try:
        with caplog.at_level(level, logger=name):
            yield caplog
    finally:
        logger.propagate = propagates
        logger.removeHandler(caplog.handler)
