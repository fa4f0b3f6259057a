"""The processes that serve settle their garbage collector before the first request
(decision 0035): the hub's ``onceonly serve`` factory and the adapter's, each in a
fresh process, leave the start-up heap frozen and young collections rarer; importing
them leaves CPython's defaults."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from onceonly.adapters.cli import YOUNG_THRESHOLD as ADAPTER_THRESHOLD
from onceonly.hub.kit.heap import YOUNG_THRESHOLD as HUB_THRESHOLD

from tests.adapters.adapter_testing import write_config

REPORT = "import gc, json; print(json.dumps([gc.get_freeze_count(), gc.get_threshold()[0]]))"

HUB = f"""
from onceonly.hub.app import create_app_from_environment
{REPORT}
app = create_app_from_environment()
{REPORT}
"""

ADAPTER = f"""
from onceonly.adapters.cli import worker_app
{REPORT}
app = worker_app()
{REPORT}
"""


def _run(program: str, tmp_path: Path, **env: str) -> list[tuple[int, int]]:
    """(frozen objects, young threshold) after the import, then after the factory."""
    environment = {**os.environ, "ONCEONLY_DATA_DIR": str(tmp_path / "hub"), **env}
    environment.pop("ONCEONLY_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [tuple(json.loads(line)) for line in done.stdout.strip().splitlines()[-2:]]


@pytest.mark.parametrize(
    ("program", "threshold"),
    [(HUB, HUB_THRESHOLD), (ADAPTER, ADAPTER_THRESHOLD)],
    ids=["hub", "adapter"],
)
def test_a_serving_process_freezes_its_start_up_heap(
    program: str, threshold: int, tmp_path: Path
) -> None:
    config = write_config(tmp_path, hub_url="http://127.0.0.1:9")
    imported, served = _run(program, tmp_path, ONCEONLY_ADAPTER_WORKER_CONFIG=str(config))
    assert imported == (0, 700)  # CPython's defaults: importing settles nothing
    frozen, young = served
    assert frozen > 10_000  # the modules and the app, out of the collector's walks
    assert young == threshold > 700
