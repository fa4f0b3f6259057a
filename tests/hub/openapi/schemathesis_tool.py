"""Schemathesis, pinned, installed beside the project rather than into it.

Schemathesis 4.32 pins ``jsonschema-rs<0.61`` while the hub needs ``>=0.61`` for its
record validation (pyproject.toml), so pip cannot resolve both into one environment;
schemathesis runs with 0.61 all the same. Its own dependencies are in the test
extra; schemathesis itself is installed once with ``--no-deps`` into
``build/test-tools/`` (git-ignored) and imported from there.
"""

import importlib
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

VERSION = "4.32.5"
TARGET = Path(__file__).resolve().parents[3] / "build" / "test-tools" / f"schemathesis-{VERSION}"


def load() -> ModuleType:
    """The pinned schemathesis, installed into ``TARGET`` on first use."""
    if not (TARGET / "schemathesis").is_dir():
        _install()
    if str(TARGET) not in sys.path:
        sys.path.insert(0, str(TARGET))
    module = importlib.import_module("schemathesis")
    assert module.SCHEMATHESIS_VERSION == VERSION, module.__file__
    return module


def _install() -> None:
    """Installed beside ``TARGET`` and renamed into place: each test process collects
    this module, and two pip installs into one target at once failed CI (this stop's
    fourth try: "Directory not empty"); only a complete tree may ever be at ``TARGET``."""
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=TARGET.parent) as work:
        installed = Path(work) / "installed"
        command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps"]
        command += ["--target", str(installed), f"schemathesis=={VERSION}"]
        subprocess.run(command, check=True, timeout=300)
        try:
            installed.rename(TARGET)
        except OSError:  # another process put its complete tree there first
            assert (TARGET / "schemathesis").is_dir(), "schemathesis: an incomplete tree"
