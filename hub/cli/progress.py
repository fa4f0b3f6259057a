"""Progress of long work (``audit verify --full``, ``catalogue import``, ``audit
export``) on standard error, drawn only when standard error is a terminal: a file, a
pipe or a CI log gets nothing, so what a script captures never changes."""

import os
import sys
import time
from types import TracebackType
from typing import TextIO

_EVERY = 0.1  # seconds between two redraws


class Progress:
    """``what: done/total`` (or ``what: done`` when the total is unknown), redrawn in
    place; cleared when the work ends, so the command's own lines follow cleanly.

    Example::

        with Progress("leaf hashes", total=size) as progress:
            for page in pages:
                progress.advance(len(page))
    """

    def __init__(self, what: str, *, total: int | None = None, stream: TextIO | None = None):
        self._what, self._total, self._done = what, total, 0
        self._stream = stream or sys.stderr
        self._shown = _is_terminal(self._stream)
        self._drawn_at = 0.0

    def __enter__(self) -> "Progress":
        self._draw(force=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._shown:
            self._stream.write("\r\x1b[K")  # erase the line
            self._stream.flush()

    @property
    def done(self) -> int:
        return self._done

    def advance(self, count: int = 1) -> None:
        self._done += count
        self._draw(force=self._done == self._total)

    def _draw(self, *, force: bool) -> None:
        now = time.monotonic()
        if not self._shown or (not force and now - self._drawn_at < _EVERY):
            return
        self._drawn_at = now
        if self._total:
            line = f"{self._what}: {self._done}/{self._total} ({self._done * 100 // self._total}%)"
        else:
            line = f"{self._what}: {self._done}"
        self._stream.write(f"\r\x1b[K{line}")
        self._stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    return stream.isatty() and os.environ.get("TERM") != "dumb"
