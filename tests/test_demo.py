"""``onceonly demo`` as a user runs it: a real process, real services on loopback."""

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _onceonly(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onceonly.hub", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_demo_tells_the_whole_story_and_exits_zero(tmp_path: Path) -> None:
    done = _onceonly("demo", "--data-dir", str(tmp_path / "demo"))
    assert done.returncode == 0, done.stdout + done.stderr
    for step in (
        "registered",
        "cecilia approves person.residential-address without registered_since",
        "receipt:",
        "refused (",
        "same token: refused (no-grant)",
        "leaf hash",
        "Every step succeeded",
    ):
        assert step in done.stdout
    assert "38001085718" not in done.stdout  # the demo shows subjects shortened


def test_demo_keeps_services_running_and_replays_against_them(tmp_path: Path) -> None:
    with subprocess.Popen(
        [
            *(sys.executable, "-m", "onceonly.hub", "demo", "--keep"),
            *("--data-dir", str(tmp_path / "kept")),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as kept:
        try:
            assert kept.stdout is not None
            lines = []
            for line in kept.stdout:
                lines.append(line)
                if line.startswith("social-welfare: http://"):
                    break
            names = ("hub", "civil-registry", "tax", "social-welfare")
            services = [line for line in lines if line.split(":")[0] in names]
            assert services[0].startswith("hub: http://127.0.0.1:"), "".join(lines)
            assert len(services) == 4
            hub_url = services[0].split(" ", 1)[1].strip()
            replay = _onceonly("demo", "--hub", hub_url, "--data-dir", str(tmp_path / "kept"))
            assert replay.returncode == 0, replay.stdout + replay.stderr
            assert "Every step succeeded" in replay.stdout
        finally:
            kept.send_signal(signal.SIGTERM)
            kept.wait(timeout=30)
    assert kept.returncode == 0


def test_demo_against_a_hub_that_is_not_there_fails_clearly(tmp_path: Path) -> None:
    done = _onceonly(
        "demo",
        "--hub",
        "http://127.0.0.1:9",
        "--data-dir",
        str(tmp_path / "x"),
        env={"ONCEONLY_ADMIN_TOKEN": "not-a-real-token"},
    )
    assert done.returncode == 1
    assert "FAILED" in done.stdout
