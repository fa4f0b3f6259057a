"""JSON log lines, one object a line: ``time``, ``level``, ``logger``, ``message``, then
the record's own members such as ``request_id``, ``item``, ``outcome``; ``exception``
when there is one. The one formatter of the project: the adapter never imports the
hub, so the hub's ``kit.logs`` takes :class:`JsonFormatter` from here (decision 0022).

Never log a raw subject identifier or a token: the provider logs the request id, item,
consumer, purpose, outcome and reason of a query, a failed source's error type, and an
unexpected error's type and traceback without its message (:func:`withheld`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

__all__ = ["JsonFormatter", "WithheldMessage", "configure_logs", "json_logs_wanted", "withheld"]

ENVIRONMENT = "ONCEONLY_ADAPTER_LOG_JSON"
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_LOGGERS = ("adapters", "onceonly.adapter", "uvicorn", "uvicorn.error", "uvicorn.access")
_TEXT_FORMAT = "%(levelname)s:     %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def json_logs_wanted(flag: bool) -> bool:
    """``--log-json``, or ``ONCEONLY_ADAPTER_LOG_JSON`` set to true, 1 or yes."""
    return flag or os.environ.get(ENVIRONMENT, "").strip().lower() in ("1", "true", "yes")


def configure_logs(*, as_json: bool) -> None:
    """The adapter's loggers and the server's write to standard error: JSON lines when
    ``as_json``, else the text the adapter always wrote."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter(_TEXT_FORMAT))
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


class WithheldMessage(Exception):
    """Stands in a log record for an exception whose message is withheld (`withheld`)."""


def withheld(error: BaseException) -> BaseException:
    """``error`` as a log record may show it: its type, its traceback and its chain of
    causes, each without its message, which can quote a subject or a token (a
    ``KeyError`` of a lookup by subject, say). Log it as ``exc_info=withheld(error)``.
    """
    kind = type(error)
    stand_in = WithheldMessage(f"{kind.__module__}.{kind.__qualname__} (message withheld)")
    stand_in.__traceback__ = error.__traceback__
    if error.__cause__ is not None:
        stand_in.__cause__ = withheld(error.__cause__)
    elif error.__context__ is not None and not error.__suppress_context__:
        stand_in.__context__ = withheld(error.__context__)
    stand_in.__suppress_context__ = error.__suppress_context__
    return stand_in
