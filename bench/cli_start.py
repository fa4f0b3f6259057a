"""How long the ``onceonly`` command takes to start, in milliseconds (issue 16: ``--help``
under 0.3 s).

Method: each command runs ``--runs`` times as a fresh process (``python -m
onceonly.hub ARGS``, standard output discarded), timed from ``subprocess.run`` to its
exit with ``time.perf_counter``; the order of the commands is shuffled in every round
so that a burst of other work on a shared machine does not land on one command only.
One unmeasured round first warms the file system cache. Reported: the median, the
fastest and the 90th percentile (nearest rank) of each, and ``python -c pass`` as the
floor (the interpreter and the virtual environment's ``site``). ``--modules`` also
lists, for ``--help``, which modules of the web stack were imported (there should be
none: see tests/hub/cli/test_cli_start.py).

Run: ``python bench/cli_start.py [--runs 30] [--modules]``.
"""

import argparse
import random
import statistics
import subprocess
import sys
import time

COMMANDS: dict[str, list[str]] = {
    "python -c pass (floor)": ["-c", "pass"],
    "onceonly --help": ["-m", "onceonly.hub", "--help"],
    "onceonly --version": ["-m", "onceonly.hub", "--version"],
    "onceonly items list --help": ["-m", "onceonly.hub", "items", "list", "--help"],
    "onceonly adapter --help": ["-m", "onceonly.hub", "adapter", "--help"],
}
WEB_STACK = ("fastapi", "sqlalchemy", "uvicorn", "starlette", "httpx", "pydantic")
IMPORTED = (
    "import contextlib, io, sys; from onceonly.hub.cli import main\n"
    "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
    "    main(['--help'])\n"
    f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({WEB_STACK!r})))"
)


def once(args: list[str]) -> float:
    """Seconds from start to exit of ``python ARGS``."""
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def nearest_rank(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(fraction * len(ordered)) - 1)]


def measure(runs: int) -> dict[str, list[float]]:
    names = list(COMMANDS)
    for name in names:  # warm-up, not measured
        once(COMMANDS[name])
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(runs):
        random.shuffle(names)
        for name in names:
            times[name].append(once(COMMANDS[name]))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--modules", action="store_true", help="web-stack modules of --help")
    args = parser.parse_args()
    times = measure(args.runs)
    print(f"start-up, ms, {args.runs} runs each ({sys.executable})")
    print(f"{'command':30}{'median':>8}{'fastest':>9}{'p90':>7}")
    for name, seconds in times.items():
        median, fastest = statistics.median(seconds), min(seconds)
        p90 = nearest_rank(seconds, 0.9)
        print(f"{name:30}{median * 1e3:8.0f}{fastest * 1e3:9.0f}{p90 * 1e3:7.0f}")
    if args.modules:
        done = subprocess.run(
            [sys.executable, "-c", IMPORTED], capture_output=True, text=True, check=True
        )
        print(f"web-stack packages imported by --help: {done.stdout.strip()}")


if __name__ == "__main__":
    main()
