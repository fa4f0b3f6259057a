"""Sampling profiles of the server processes with py-spy, and their summary.

py-spy attaches to a running process by pid (``py-spy record --pid``), samples it
without instrumenting it, and writes collapsed stacks (``--format raw``: one line
per distinct stack, ``frame;frame;... count``), which speedscope and flamegraph.pl
read as they are. The summary counts, over all samples, the functions on the CPU
(self) and the project functions on the stack (inclusive).
"""

import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_PROJECT = ("hub/", "adapters/")


@dataclass(frozen=True)
class Summary:
    samples: int
    self_top: list[tuple[str, int]]
    project_inclusive: list[tuple[str, int]]
    libraries: list[tuple[str, int]]
    callees: list[tuple[str, int]]


def py_spy() -> str | None:
    return shutil.which("py-spy")


@contextmanager
def recording(pid: int, *, output: Path, seconds: float) -> Iterator[None]:
    """Sample ``pid`` for ``seconds`` at 200 Hz while the block runs.

    ``--gil`` keeps only the thread that holds the GIL: the event loop's Python
    work. Without it, threads blocked in C (aiosqlite's worker in ``queue.get``,
    uvloop in ``epoll_wait``) are wrongly counted as busy.
    """
    executable = py_spy()
    if executable is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    command = [
        executable,
        "record",
        f"--pid={pid}",
        "--format=raw",
        "--rate=200",
        "--gil",
        "--nonblocking",
        f"--duration={max(1, round(seconds))}",
        f"--output={output}",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        _, stderr = process.communicate(timeout=seconds + 30)
        if process.returncode != 0 or not output.exists():
            raise RuntimeError(f"py-spy failed: {stderr.decode(errors='replace')[-500:]}")


def summarize(collapsed: Path, *, top: int = 15) -> Summary:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    callees: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_parse(frame) for frame in stack.split(";")]
        samples += count
        self_time[_label(*frames[-1])] += count
        libraries[_library(frames)] += count
        callees[_callee(frames)] += count
        for name in {_label(f, path) for f, path in frames if _in_project(path)}:
            inclusive[name] += count
    return Summary(
        samples=samples,
        self_top=self_time.most_common(top),
        project_inclusive=inclusive.most_common(top),
        libraries=libraries.most_common(top),
        callees=callees.most_common(top),
    )


def _parse(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), ""
    return match["function"], match["file"]


def _label(function: str, path: str) -> str:
    return f"{function} ({_short(path)})" if path else function


def _short(path: str) -> str:
    """py-spy names files relative to their sys.path entry (``hub/db.py``) already."""
    return path.split("/site-packages/", 1)[-1]


def _in_project(path: str) -> bool:
    return _short(path).startswith(_PROJECT)


def _package(path: str) -> str:
    return _short(path).split("/", 1)[0].removesuffix(".py") or "(no Python frame)"


def _library(frames: list[tuple[str, str]]) -> str:
    """Who holds the CPU: the top-level package (or module) of the innermost frame."""
    return _package(frames[-1][1])


def _callee(frames: list[tuple[str, str]]) -> str:
    """Which library the innermost project function called into (the frame after it),
    so that SQLAlchemy's time counts as SQLAlchemy's however deep it goes; stacks
    with no project frame are the server framework's own."""
    last = max((i for i, (_, path) in enumerate(frames) if _in_project(path)), default=None)
    if last is None:
        return f"framework: {_package(frames[-1][1])} (no project frame)"
    if last == len(frames) - 1:
        return f"project code: {_label(*frames[last])}"
    return f"{_package(frames[last + 1][1])} called by {_label(*frames[last])}"
