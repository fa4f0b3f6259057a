"""The wheel installs in a fresh virtualenv and runs the demo, away from the checkout.

Nothing named onceonly is published on PyPI: departments install the wheel built
from this repository (docs/adapters.md, deploy/README.md). This test does what those
docs say, word for word: ``python -m build --wheel``, a new venv, ``pip install`` of the
wheel, then ``onceonly --help`` and ``onceonly demo`` in an empty directory, so the
starter catalogue and the migrations must come from the installed package.
"""

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH and the like from the test run must not leak into the fresh venv
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def test_the_built_wheel_installs_in_a_fresh_venv_and_runs_the_demo(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = _run(sys.executable, "-m", "build", "--wheel", "--outdir", dist, ROOT, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = dist.glob("onceonly-*.whl")

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python, onceonly = env_dir / "bin" / "python", env_dir / "bin" / "onceonly"
    installed = _run(python, "-m", "pip", "install", "-q", wheel, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-2000:]

    elsewhere = tmp_path / "elsewhere"  # no schemas/, no hub/, no adapters/ here
    elsewhere.mkdir()
    probe = _run(
        python,
        "-c",
        "import importlib.util, onceonly.hub, onceonly.adapters;"
        "print(onceonly.hub.__file__);"
        "print(importlib.util.find_spec('hub'), importlib.util.find_spec('adapters'))",
        cwd=elsewhere,
    )
    assert probe.returncode == 0, probe.stderr
    location, top_level = probe.stdout.splitlines()
    assert location.startswith(str(env_dir))  # the installed copy, not the checkout
    assert top_level == "None None"

    demo = _run(onceonly, "demo", "--data-dir", tmp_path / "demo", cwd=elsewhere)
    assert demo.returncode == 0, (demo.stdout[-3000:], demo.stderr[-3000:])
    assert "FAILED" not in demo.stdout


def test_the_readmes_demo_command_works_from_a_plain_editable_install(tmp_path: Path) -> None:
    """README.md's first command, `pip install -e .` (setuptools' default editable mode,
    not the strict one the test command uses) then `onceonly demo` in the checkout."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python, onceonly = env_dir / "bin" / "python", env_dir / "bin" / "onceonly"
    installed = _run(python, "-m", "pip", "install", "-q", "-e", ROOT, cwd=ROOT)
    assert installed.returncode == 0, installed.stderr[-2000:]
    demo = _run(onceonly, "demo", "--data-dir", tmp_path / "demo", cwd=ROOT)
    assert demo.returncode == 0, (demo.stdout[-3000:], demo.stderr[-3000:])
    assert "FAILED" not in demo.stdout
    assert "Every step succeeded" in demo.stdout
