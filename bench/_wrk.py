"""wrk (a C load generator) replaying pre-built requests: the file it reads, its
command line, and its report.

Every request of the exchange carries something single-use (a hub request token, a
DPoP proof), so wrk cannot repeat one request: the bench writes each request in
full to a file, and ``bench/exchange.lua`` sends each once, spread over wrk's
threads. wrk's own CPU time is read from this process's reaped children
(``RUSAGE_CHILDREN``) around its run.
"""

import json
import os
import resource
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent / "exchange.lua"
_MARKER = "BENCH-RESULT "


def raw_request(
    *, method: str, target: str, host: str, headers: Mapping[str, str], body: bytes
) -> bytes:
    """One HTTP/1.1 request with a body, byte for byte as wrk will write it."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


def write_requests(path: Path, requests: Iterable[bytes]) -> int:
    """Write ``requests`` as ``<length>\\n<bytes>`` records; return how many."""
    count = 0
    with path.open("wb") as out:
        for request in requests:
            out.write(b"%d\n" % len(request))
            out.write(request)
            count += 1
    return count


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run saw. Latencies in ms, from wrk's histogram of every response."""

    responses: int
    seconds: float
    sent: int
    ran_out: int
    statuses: dict[int, int]
    socket_errors: dict[str, int]
    latency_ms: dict[str, float]
    wrk_cpu_seconds: float

    @property
    def ok(self) -> int:
        return sum(count for status, count in self.statuses.items() if 200 <= status < 300)

    @property
    def errors(self) -> dict[str, int]:
        """Non-2xx answers by status, socket errors by kind, and replayed requests."""
        found = {f"HTTP {s}": n for s, n in sorted(self.statuses.items()) if not 200 <= s < 300}
        found |= {f"socket {kind}": n for kind, n in self.socket_errors.items() if n}
        if self.ran_out:
            found["ran out of requests"] = self.ran_out
        return found

    @property
    def throughput(self) -> float:
        """2xx answers per second."""
        return self.ok / self.seconds if self.seconds else 0.0


def parse_report(stdout: str, *, wrk_cpu_seconds: float = 0.0) -> WrkResult:
    """The ``BENCH-RESULT`` line that ``exchange.lua``'s done() prints."""
    lines = [line for line in stdout.splitlines() if line.startswith(_MARKER)]
    if not lines:
        raise RuntimeError(f"wrk printed no result line:\n{stdout}")
    report: dict[str, Any] = json.loads(lines[-1].removeprefix(_MARKER))
    latency = report["latency_us"]
    return WrkResult(
        responses=int(report["responses"]),
        seconds=report["duration_us"] / 1e6,
        sent=int(report["sent"]),
        ran_out=int(report["ran_out"]),
        statuses={int(status): int(count) for status, count in report["statuses"].items()},
        socket_errors={kind: int(count) for kind, count in report["socket_errors"].items()},
        latency_ms={name: round(value / 1000, 2) for name, value in latency.items()},
        wrk_cpu_seconds=wrk_cpu_seconds,
    )


def wrk_command(
    *, url: str, requests_file: Path, connections: int, threads: int, seconds: float
) -> list[str]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    return [
        wrk,
        f"--connections={connections}",
        f"--threads={threads}",
        f"--duration={max(1, round(seconds))}s",
        "--timeout=30s",
        f"--script={SCRIPT}",
        url,
        "--",
        str(requests_file),
        str(threads),
    ]


def run_wrk(
    *,
    url: str,
    requests_file: Path,
    connections: int,
    threads: int,
    seconds: float,
    rate: float | None = None,
) -> WrkResult:
    """Run wrk to the end; ``rate`` paces it (requests/s in all), else it runs flat out."""
    env = dict(os.environ)
    env.pop("BENCH_RATE", None)
    if rate:
        env["BENCH_RATE"] = f"{rate:.3f}"
    command = wrk_command(
        url=url,
        requests_file=requests_file,
        connections=connections,
        threads=threads,
        seconds=seconds,
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    finished = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if finished.returncode != 0:
        raise RuntimeError(f"wrk failed ({finished.returncode}): {finished.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return parse_report(finished.stdout, wrk_cpu_seconds=cpu)
