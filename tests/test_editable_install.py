"""README.md's first command works: ``pip install -e .`` in a fresh virtualenv, then
``onceonly demo`` in the checkout."""

from pathlib import Path

from tests.fresh_venv import ROOT, fresh_venv, run


def test_the_readmes_demo_command_works_from_a_plain_editable_install(tmp_path: Path) -> None:
    """setuptools' default editable mode, not the strict one the test command uses."""
    python, onceonly = fresh_venv(tmp_path / "venv")
    installed = run(python, "-m", "pip", "install", "-q", "-e", ROOT, cwd=ROOT)
    assert installed.returncode == 0, installed.stderr[-2000:]
    demo = run(onceonly, "demo", "--data-dir", tmp_path / "demo", cwd=ROOT)
    assert demo.returncode == 0, (demo.stdout[-3000:], demo.stderr[-3000:])
    assert "FAILED" not in demo.stdout
    assert "Every step succeeded" in demo.stdout
