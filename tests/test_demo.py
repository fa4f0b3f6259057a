"""``onceonly demo`` as a user runs it: a real process, real services on loopback."""

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx

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


STORY = (
    "registered",
    "cecilia approves person.residential-address without registered_since",
    "receipt:",
    "refused (",
    "same token: refused (no-grant)",
    "leaf hash",
    "Every step succeeded",
)


def test_demo_tells_the_whole_story_keeps_its_services_and_replays_against_them(
    tmp_path: Path,
) -> None:
    """One demo hub (the story is ~5 s of CPU a run): ``--keep`` tells the whole story
    as a plain run does, then leaves the services running; a second ``onceonly demo
    --hub`` plays it again against them; SIGTERM ends the first with status 0, as a
    plain run ends when every step succeeded (both end in demo.run's one return)."""
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
            told = "".join(lines)
            for step in STORY:
                assert step in told, told
            assert "38001085718" not in told  # the demo shows subjects shortened
            names = ("hub", "civil-registry", "tax", "social-welfare")
            services = [line for line in lines if line.split(":")[0] in names]
            assert services[0].startswith("hub: http://127.0.0.1:"), told
            assert len(services) == 4
            hub_url = services[0].split(" ", 1)[1].strip()
            replay = _onceonly("demo", "--hub", hub_url, "--data-dir", str(tmp_path / "kept"))
            assert replay.returncode == 0, replay.stdout + replay.stderr
            assert "Every step succeeded" in replay.stdout
            # the kept hub hashes new people's passwords at the default cost, not the story's
            token = (tmp_path / "kept" / "hub" / "keys" / "admin-token").read_text().strip()
            put = httpx.put(
                f"{hub_url}/v1/admin/people/maria",
                json={"password": "a passphrase of her own"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert put.status_code in (200, 201), put.text
            with sqlite3.connect(tmp_path / "kept" / "hub" / "onceonly.db") as db:
                (stored,) = db.execute(
                    "SELECT password_hash FROM people WHERE username = 'maria'"
                ).fetchone()
            assert ",".join(stored.split("$")[3].split(",")[:2]) == "m=65536,t=3", stored
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
