"""The wheel installs in a fresh virtualenv and runs the demo, away from the checkout.

Nothing named onceonly is published on PyPI: departments install the wheel built
from this repository (docs/adapters.md, deploy/README.md). This test does what those
docs say, word for word: ``python -m build --wheel``, a new venv, ``pip install`` of the
wheel, then ``onceonly --help`` and ``onceonly demo`` in an empty directory, so the
starter catalogue and the migrations must come from the installed package.
"""

import sys
from pathlib import Path

from tests.fresh_venv import ROOT, fresh_venv, run


def test_the_built_wheel_installs_in_a_fresh_venv_and_runs_the_demo(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = run(sys.executable, "-m", "build", "--wheel", "--outdir", dist, ROOT, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = dist.glob("onceonly-*.whl")

    env_dir = tmp_path / "venv"
    python, onceonly = fresh_venv(env_dir)
    installed = run(python, "-m", "pip", "install", "-q", wheel, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-2000:]

    elsewhere = tmp_path / "elsewhere"  # no schemas/, no hub/, no adapters/ here
    elsewhere.mkdir()
    probe = run(
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

    demo = run(onceonly, "demo", "--data-dir", tmp_path / "demo", cwd=elsewhere)
    assert demo.returncode == 0, (demo.stdout[-3000:], demo.stderr[-3000:])
    assert "FAILED" not in demo.stdout
