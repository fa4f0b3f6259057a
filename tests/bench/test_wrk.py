"""bench/_wrk.py and bench/exchange.lua: the request file, the report, and wrk
replaying each pre-built request once against a loopback server that refuses replays
(as the adapter refuses a spent request token and the hub a spent DPoP proof)."""

import shutil
import subprocess  # noqa: F401 (wrk runs as a subprocess: the wire tier, tests/conftest.py)
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from _wrk import parse_report, raw_request, run_wrk, write_requests

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")


def test_raw_request_is_a_whole_http11_request_with_its_body_length() -> None:
    raw = raw_request(
        method="POST",
        target="/q",
        host="127.0.0.1:80",
        headers={"Authorization": "Bearer t"},
        body=b'{"a":1}',
    )
    assert raw == (
        b"POST /q HTTP/1.1\r\nHost: 127.0.0.1:80\r\nAuthorization: Bearer t\r\n"
        b'Content-Length: 7\r\n\r\n{"a":1}'
    )


def test_request_file_holds_each_request_after_its_length(tmp_path: Path) -> None:
    path = tmp_path / "requests"
    assert write_requests(path, [b"one\r\n", b"two"]) == 2
    assert path.read_bytes() == b"5\none\r\n3\ntwo"


def test_report_counts_non_2xx_socket_errors_and_replays_as_errors() -> None:
    line = (
        'BENCH-RESULT {"responses": 12, "duration_us": 2000000, "sent": 14, "ran_out": 2,'
        ' "statuses": {"200": 10, "401": 2}, "socket_errors": {"connect": 0, "read": 0,'
        ' "write": 0, "status": 2, "timeout": 1}, "latency_us": {"p50": 1500, "p99": 9000}}'
    )
    report = parse_report(f"wrk noise\n{line}\n", wrk_cpu_seconds=0.5)
    assert report.ok == 10
    assert report.throughput == 5.0
    assert report.latency_ms == {"p50": 1.5, "p99": 9.0}
    assert report.errors == {
        "HTTP 401": 2,
        "socket status": 2,
        "socket timeout": 1,
        "ran out of requests": 2,
    }


def test_report_without_the_result_line_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no result line"):
        parse_report("Running 1s test\n")


class _SingleUse(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: Counter[bytes]
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            self.seen[body] += 1
            status = 200 if self.seen[body] == 1 else 401
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def single_use_server() -> Iterator[tuple[str, Counter[bytes]]]:
    seen: Counter[bytes] = Counter()
    handler = type("Handler", (_SingleUse,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # shutdown() waits for serve_forever to look (every poll_interval, 0.5 s by default)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def _requests(tmp_path: Path, url: str, count: int) -> Path:
    host = url.removeprefix("http://")
    bodies = (b"request %d" % number for number in range(count))
    path = tmp_path / "requests"
    write_requests(
        path,
        (raw_request(method="POST", target="/", host=host, headers={}, body=b) for b in bodies),
    )
    return path


@needs_wrk
def test_wrk_sends_each_request_once_then_reports_the_replays(
    tmp_path: Path, single_use_server: tuple[str, Counter[bytes]]
) -> None:
    url, seen = single_use_server
    result = run_wrk(
        url=url, requests_file=_requests(tmp_path, url, 40), connections=4, threads=2, seconds=1
    )
    assert len(seen) == 40  # both threads' shares of the file, none lost
    assert result.statuses[200] == 40  # and none sent twice before the file ran out
    assert result.ran_out == result.sent - 40 > 0
    assert result.errors["HTTP 401"] == result.statuses[401]


@needs_wrk
def test_paced_wrk_sends_no_faster_than_the_rate(
    tmp_path: Path, single_use_server: tuple[str, Counter[bytes]]
) -> None:
    url, _ = single_use_server
    result = run_wrk(
        url=url,
        requests_file=_requests(tmp_path, url, 500),
        connections=4,
        threads=2,
        seconds=1,  # wrk's shortest run
        rate=20,
    )
    assert result.ok == result.responses > 0
    assert result.sent <= 20 * 1 + 4  # a slot every 100 ms per thread, one per connection
