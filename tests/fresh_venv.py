"""A fresh virtualenv for the test that installs Onceonly as a user would
(test_wheel_install.py: the wheel, then the README's editable install, in one venv).

Nothing here byte-compiles ahead of time: no test reads a ``.pyc``, and Python
compiles what it imports anyway (a few hundred of the thousands of files installed).
pip compiles every file it installs unless told not to, ~4 s of CPU for Onceonly's
dependencies and ~2.5 s for the bundled pip and setuptools that ``python -m venv``
installs, against ~2 s for what the demo then imports. pip still resolves every
dependency from the configured index, as a user's pip does.
"""

import ensurepip
import os
import subprocess
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PIP_SETTINGS = {"PIP_COMPILE": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
"""For every pip these tests start (the docs' command lines left word for word, and the
pip that installs a build's or an editable install's build requirements): ``--no-compile``
(not ``PIP_NO_COMPILE=1``, which pip reads as ``--compile``), and no look at the index
for a newer pip after each command."""

BUNDLED = Path(ensurepip.__file__).parent / "_bundled"


def run(*args: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH and the like from the test run must not leak into the fresh venv
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**env, **PIP_SETTINGS},
    )


def fresh_venv(env_dir: Path) -> tuple[Path, Path]:
    """A new venv with what ``python -m venv`` puts in it (pip, and setuptools on 3.11):
    its python and (once installed) onceonly.

    ensurepip installs its bundled wheels with pip, compiling them, and drops every
    ``PIP_*`` setting on the way; so the venv is made without pip and the same bundled
    wheels are installed as ensurepip installs them (pip run from its own wheel, no
    index), only without compiling. Where Python's bundled wheels are not there (a
    distribution's debundled Python), ensurepip does it."""
    wheels = sorted(BUNDLED.glob("*.whl"))
    pip_wheel = next((wheel for wheel in wheels if wheel.name.startswith("pip-")), None)
    if pip_wheel is None:
        venv.EnvBuilder(with_pip=True).create(env_dir)
    else:
        venv.EnvBuilder(with_pip=False).create(env_dir)
        python = env_dir / "bin" / "python"
        bootstrap = (python, pip_wheel / "pip", "install", "-q", "--no-index", *wheels)
        installed = run(*bootstrap, cwd=env_dir)
        assert installed.returncode == 0, installed.stderr[-2000:]
    return env_dir / "bin" / "python", env_dir / "bin" / "onceonly"
