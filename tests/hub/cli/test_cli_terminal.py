"""The real ``onceonly`` command on a terminal (a pseudo-terminal) and off one: a table
and progress on a terminal; JSON and no progress into a pipe, so scripts see what they
always saw."""

import os
import pty
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub_testing import CATALOGUE, RunningHub, running_hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    data_dir = tmp_path_factory.mktemp("hub")
    with running_hub(database_url=f"sqlite:///{data_dir / 'hub.db'}", data_dir=data_dir) as hub:
        yield hub


def environment(hub: RunningHub, tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("ONCEONLY_")}
    return {
        **clean,
        "TERM": "xterm",
        "ONCEONLY_HUB_URL": hub.url,
        "ONCEONLY_ADMIN_TOKEN": hub.keys.admin_token,
        "ONCEONLY_SESSION_FILE": str(tmp_path / "session.json"),
        "ONCEONLY_DATA_DIR": str(tmp_path / "elsewhere"),
    }


def on_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """``python -m onceonly.hub ARGV`` with stdout and stderr on one pseudo-terminal:
    its exit status and everything it wrote there."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "onceonly.hub", *argv],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    written = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        assert ready, "the command wrote nothing for a minute"
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the command ended and closed the terminal
            break
        if not chunk:
            break
        written += chunk
    os.close(leader)
    return process.wait(timeout=60), written.decode()


def test_a_terminal_gets_progress_and_a_table(hub: RunningHub, tmp_path: Path) -> None:
    env = environment(hub, tmp_path)
    status, shown = on_a_terminal(["catalogue", "import", str(CATALOGUE)], env)
    assert status == 0, shown
    assert "items registered: 17/17 (100%)" in shown  # progress, then erased
    assert "\x1b[K" in shown
    status, shown = on_a_terminal(["items", "list", "--owner", "tax"], env)
    assert status == 0, shown
    header, *rows = shown.splitlines()
    assert header.split()[:3] == ["ID", "OWNER", "TITLE"]
    assert rows[0].startswith("tax.annual-income-statement  tax")


def test_a_pipe_gets_json_and_no_progress(hub: RunningHub, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "onceonly.hub", "catalogue", "import", str(CATALOGUE)],
        env=environment(hub, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith('[\n  "building.permit"')


def catalogue_import_in(directory: Path, hub: RunningHub) -> subprocess.CompletedProcess[str]:
    """``onceonly catalogue import`` without a directory, run in ``directory``."""
    return subprocess.run(
        [sys.executable, "-m", "onceonly.hub", "catalogue", "import"],
        cwd=directory,
        env=environment(hub, directory),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_catalogue_import_outside_a_checkout_takes_the_installed_catalogue(
    hub: RunningHub, tmp_path: Path
) -> None:
    """Without a directory, and with no ./schemas where it runs (an operator's shell on
    a hub host), ``catalogue import`` imports the starter catalogue the package installs
    and says so (before: "cannot read schemas/departments.json")."""
    done = catalogue_import_in(tmp_path, hub)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("the starter catalogue: "), done.stderr
    assert (Path(done.stderr.split(": ", 1)[1].strip()) / "departments.json").is_file()
    assert '"tax.annual-income-statement"' in done.stdout


def test_catalogue_import_reads_an_incomplete_schemas_directory_never_the_starter_one(
    hub: RunningHub, tmp_path: Path
) -> None:
    """A ./schemas of an operator's own, without departments.json, is an error to fix,
    not a reason to register the demo's departments and items on a real hub."""
    (tmp_path / "schemas" / "items").mkdir(parents=True)
    done = catalogue_import_in(tmp_path, hub)
    assert done.returncode == 1, done.stdout
    assert "cannot read schemas/departments.json" in done.stderr, done.stderr
    assert "starter catalogue" not in done.stderr
