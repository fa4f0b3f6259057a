"""bench/exchange.py's pure parts: how many requests to pre-build, CPU per request,
the audit check, ratios and the latency the hub adds; and nginx's configuration."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _processes import nginx_config, pin_tree, tree_pids
from exchange import (
    PathRound,
    added_latency,
    audit_problem,
    cpu_per_request,
    parse_options,
    ratios,
    requests_needed,
)


def test_requests_needed_covers_twice_the_rate_for_the_seconds() -> None:
    assert requests_needed(200, 10) >= 2 * 200 * 10
    assert requests_needed(0, 10) > 0  # before any rate is known


def test_cpu_per_request_is_the_window_s_cpu_over_the_answers() -> None:
    before = {"hub": 1.0, "adapter": None, "gone": 2.0}
    after = {"hub": 1.5, "adapter": 3.0, "gone": None}
    assert cpu_per_request(before, after, 100) == {"hub": 5.0, "adapter": None, "gone": None}
    assert cpu_per_request(before, after, 0)["hub"] is None


@pytest.mark.parametrize(
    ("audited", "answered", "sent", "problem"),
    [
        (100, 100, 100, None),
        (110, 100, 116, None),  # in flight when wrk stopped: audited, never read
        (99, 100, 116, "1 answered exchanges have no audit entry"),
        (117, 100, 116, "1 more audit entries than requests sent"),
    ],
)
def test_audit_problem(audited: int, answered: int, sent: int, problem: str | None) -> None:
    assert audit_problem(audited=audited, answered=answered, sent=sent) == problem


def _round(path: str, throughput: float, latency: dict[str, float]) -> PathRound:
    return PathRound(
        path=path,
        round=1,
        throughput=throughput,
        answered=0,
        seconds=10,
        latency_ms=latency,
        errors={},
        cpu_ms_per_request={},
        rate=50.0,
    )


def test_ratios_are_each_path_over_direct() -> None:
    summary = {"direct": {"throughput": 200.0}, "nginx": {"throughput": 190.0}}
    assert ratios(summary | {"hub": {"throughput": 50.0}}) == {
        "nginx/direct": 0.95,
        "hub/direct": 0.25,
    }


def test_added_latency_is_the_difference_of_each_percentile_at_the_same_rate() -> None:
    paced = [
        _round("direct", 50, {"p50": 2.0, "p90": 3.0, "p99": 5.0}),
        _round("hub", 49, {"p50": 9.0, "p90": 12.5, "p99": 20.0}),
    ]
    added = added_latency(paced)
    assert added["added_ms"] == {"p50": 7.0, "p90": 9.5, "p99": 15.0}
    assert added["rate"] == 50.0


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_accepts_the_proxy_configuration_unprivileged(tmp_path: Path) -> None:
    (tmp_path / "nginx.conf").write_text(nginx_config(prefix=tmp_path, port=1, upstream_port=2))
    checked = subprocess.run(
        [
            shutil.which("nginx") or "nginx",
            "-t",
            "-e",
            "stderr",
            "-p",
            str(tmp_path),
            "-c",
            str(tmp_path / "nginx.conf"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize(
    "arguments",
    [
        ["--paced-rate", "0"],
        ["--paced-rate", "-5"],
        ["--paced-rate", "nan"],
        ["--paced-rate", "300", "--no-half-rate"],
        ["--paced-rate", "300", "--generator", "python"],
    ],
)
def test_a_paced_rate_that_could_not_be_used_is_refused(arguments: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_options(arguments)


def test_a_paced_rate_is_kept() -> None:
    assert parse_options(["--paced-rate", "350"]).paced_rate == 350.0
    assert parse_options([]).paced_rate is None


def test_pin_is_an_option() -> None:
    assert parse_options(["--pin"]).pin is True
    assert parse_options([]).pin is False


# A parent with a thread of its own, and a child process: what `onceonly serve --workers
# 2` is (a supervisor and its workers), each with threads (aiosqlite's, the executor's).
_TREE = """
import subprocess, sys, threading, time
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs 2 CPUs")
def test_pin_tree_moves_every_thread_of_every_descendant() -> None:
    cpu = min(os.sched_getaffinity(0))
    with subprocess.Popen(
        [sys.executable, "-c", _TREE], stdout=subprocess.PIPE, text=True
    ) as parent:
        assert parent.stdout is not None
        _pin_and_check(parent, cpu)


def _pin_and_check(parent: subprocess.Popen[str], cpu: int) -> None:
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert set(tree_pids(parent.pid)) >= {parent.pid, child}
        pin_tree(parent.pid, {cpu})
        threads = [
            int(task.name)
            for pid in (parent.pid, child)
            for task in Path(f"/proc/{pid}/task").iterdir()
        ]
        assert len(threads) >= 3  # the parent's two threads and the child's one
        assert all(os.sched_getaffinity(thread) == {cpu} for thread in threads)
    finally:
        for pid in tree_pids(parent.pid)[::-1]:
            os.kill(pid, 9)
        parent.wait()
