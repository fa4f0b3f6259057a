"""JSON log lines with request ids. Never log a raw subject identifier or a token.

A process that stops before it serves says why in one line (:func:`fatal`), in the
same format as its logs; so does uvicorn when the application's start-up fails
(:func:`configure` folds its traceback into one line).
"""

import logging
import sys
from typing import TextIO

# One shape of JSON log line for the hub and the departments' adapters (decision 0022).
from onceonly.adapters.logs import JsonFormatter

# The server's own records (a request it could not parse, an answer left unfinished)
# go the same way as the hub's, so that standard error holds JSON lines only.
_SERVER_LOGGERS = ("uvicorn", "uvicorn.access")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What uvicorn logs when the application's lifespan start-up raises (Starlette hands
# it the traceback as text), then after it.
_TRACEBACK = "Traceback (most recent call last):"
_LIFESPAN_FAILED = "Exception in 'lifespan' protocol"
_STARTUP_FAILED = "Application startup failed. Exiting."


def _formatter(as_json: bool) -> logging.Formatter:
    return JsonFormatter() if as_json else logging.Formatter(_TEXT_FORMAT)


def one_line(error: BaseException) -> str:
    """An error as one line of text: its message, with its type when that says more."""
    text = " ".join(str(error).split())
    if isinstance(error, RuntimeError | ValueError | OSError) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class _OneLineStartupFailure(logging.Filter):
    """uvicorn logs a failed application start-up as a traceback, then a second
    line: one line instead, naming the error (the hub's own checks run first, so what
    gets here is rare; `onceonly config check` says more)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message == _STARTUP_FAILED:
            return False
        if message.startswith(_TRACEBACK):
            lines = [line for line in message.splitlines() if line.strip()]
            record.msg, record.args = "the hub cannot start: %s", (lines[-1].strip(),)
        elif message.startswith(_LIFESPAN_FAILED) and record.exc_info and record.exc_info[1]:
            record.msg, record.args = "the hub cannot start: %s", (one_line(record.exc_info[1]),)
            record.exc_info, record.exc_text = None, None
        return True


_STARTUP_FILTER = _OneLineStartupFailure()


def configure(*, level: str, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(as_json))
    root = logging.getLogger("onceonly")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    logging.getLogger("uvicorn.error").addFilter(_STARTUP_FILTER)  # added once
    if as_json:  # after uvicorn configured its loggers: their levels stay its own
        for name in _SERVER_LOGGERS:
            logging.getLogger(name).handlers[:] = [handler]


def fatal(message: str, *, as_json: bool, logger: str, stream: TextIO | None = None) -> None:
    """Write ``message`` as one error record on standard error (or ``stream``): a JSON
    line when ``as_json``, else text; newlines in it become spaces."""
    record = logging.LogRecord(logger, logging.ERROR, "", 0, " ".join(message.split()), (), None)
    print(_formatter(as_json).format(record), file=stream or sys.stderr, flush=True)
