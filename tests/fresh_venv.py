"""A fresh virtualenv for the tests that install Onceonly as a user would
(test_wheel_install.py, test_editable_install.py): two files, so that xdist runs the
two slowest tests of the suite side by side."""

import os
import subprocess
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH and the like from the test run must not leak into the fresh venv
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def fresh_venv(env_dir: Path) -> tuple[Path, Path]:
    """A new venv with pip and nothing else: its python and (once installed) onceonly."""
    venv.EnvBuilder(with_pip=True).create(env_dir)
    return env_dir / "bin" / "python", env_dir / "bin" / "onceonly"
