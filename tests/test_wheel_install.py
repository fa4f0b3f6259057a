"""Onceonly installed as users install it, in one fresh virtualenv: the wheel that
departments install, then the README's first command, and ``onceonly demo`` after each.

Nothing named onceonly is published on PyPI: departments install the wheel built
from this repository (docs/adapters.md, deploy/README.md). This test does what those
docs say, word for word: ``python -m build --wheel``, a new venv, ``pip install`` of the
wheel, its dependencies resolved from the configured index as a user's pip resolves
them, then ``onceonly adapter --help`` and ``onceonly demo`` in an empty directory, so the
starter catalogue and the migrations must come from the installed package.

Then README.md's first command: ``pip install -e .`` in the checkout (setuptools'
default editable mode, not the strict one the test command uses) and ``onceonly demo``
there. It goes into the same venv, where pip replaces the wheel's onceonly and finds
every dependency installed: the ones it would resolve and install in a fresh venv,
since the editable install declares the same dependencies as the wheel (checked here).
A second fresh venv resolved and installed the same ~50 distributions from the index
again, ~18 s of CPU and a minute on a busy machine, to prove nothing more.
"""

import sys
from pathlib import Path

from tests.fresh_venv import ROOT, fresh_venv, run

PROBE = """\
import importlib.metadata, importlib.util, onceonly.hub, onceonly.adapters
print(onceonly.hub.__file__)
print(importlib.util.find_spec("hub"), importlib.util.find_spec("adapters"))
print(sorted(importlib.metadata.requires("onceonly") or []))
"""
"""Where onceonly.hub is imported from; whether anything generic is importable at the
top level; the dependencies the installed onceonly declares."""


def _probe(python: Path, *, cwd: Path) -> tuple[str, str, str]:
    probed = run(python, "-c", PROBE, cwd=cwd)
    assert probed.returncode == 0, probed.stderr
    location, top_level, requires = probed.stdout.splitlines()
    return location, top_level, requires


def _demo(onceonly: Path, *, data_dir: Path, cwd: Path) -> None:
    demo = run(onceonly, "demo", "--data-dir", data_dir, cwd=cwd)
    assert demo.returncode == 0, (demo.stdout[-3000:], demo.stderr[-3000:])
    assert "FAILED" not in demo.stdout
    assert "Every step succeeded" in demo.stdout


def test_the_wheel_then_the_readmes_editable_install_run_the_demo(tmp_path: Path) -> None:
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
    location, top_level, wheel_requires = _probe(python, cwd=elsewhere)
    assert location.startswith(str(env_dir))  # the installed copy, not the checkout
    assert top_level == "None None"
    helped = run(onceonly, "adapter", "--help", cwd=elsewhere)
    assert helped.returncode == 0, helped.stderr
    _demo(onceonly, data_dir=tmp_path / "demo", cwd=elsewhere)

    # README.md: pip install -e . (in the checkout), then onceonly demo there.
    editable = run(python, "-m", "pip", "install", "-q", "-e", ROOT, cwd=ROOT)
    assert editable.returncode == 0, editable.stderr[-2000:]
    location, top_level, editable_requires = _probe(python, cwd=elsewhere)
    assert location == str(ROOT / "hub" / "__init__.py")  # the checkout, not the wheel's copy
    assert top_level == "None None"
    assert editable_requires == wheel_requires  # what a fresh venv would have resolved
    _demo(onceonly, data_dir=tmp_path / "demo-editable", cwd=ROOT)
