"""JSON log lines with request ids. Never log a raw subject identifier or a token."""

import json
import logging
import sys
from typing import Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
# The server's own records (a request it could not parse, an answer left unfinished)
# go the same way as the hub's, so that standard error holds JSON lines only.
_SERVER_LOGGERS = ("uvicorn", "uvicorn.access")


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


def configure(*, level: str, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("onceonly")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    if as_json:  # after uvicorn configured its loggers: their levels stay its own
        for name in _SERVER_LOGGERS:
            logging.getLogger(name).handlers[:] = [handler]
