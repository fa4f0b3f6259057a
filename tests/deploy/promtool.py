"""promtool, Prometheus's checker, fetched once from Debian's ``prometheus`` package.

Installing the package would start a Prometheus daemon; the tests need only its
``/usr/bin/promtool``, so the package is downloaded (``apt-get download``, no install)
and unpacked (``dpkg -x``) into ``build/test-tools/`` (git-ignored) on first use.
Debian 12 has Prometheus 2.42. Outside CI the tests skip where apt cannot fetch it;
in CI they fail (``.ci/run`` makes sure apt's package lists are there).
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "build" / "test-tools"
TARGET = TOOLS / "prometheus-deb"
PROMTOOL = TARGET / "usr" / "bin" / "promtool"


def promtool() -> Path:
    """The path of promtool, unpacked into ``TARGET`` on first use."""
    if not PROMTOOL.is_file():
        _fetch()
    version = subprocess.run(
        [str(PROMTOOL), "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    assert version.stdout.startswith("promtool, version 2."), version.stdout
    return PROMTOOL


def _fetch() -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        _unavailable("apt-get and dpkg are needed to fetch promtool")
    TOOLS.mkdir(parents=True, exist_ok=True)
    # Unpacked beside the target and renamed into place: another test process may be
    # doing the same, and only a complete tree may ever be at TARGET.
    with tempfile.TemporaryDirectory(dir=TOOLS) as work:
        download = subprocess.run(
            ["apt-get", "download", "prometheus"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if download.returncode != 0:
            _unavailable(f"apt-get download prometheus failed: {download.stderr.strip()}")
        (package,) = Path(work).glob("prometheus_*.deb")
        unpacked = Path(work) / "unpacked"
        subprocess.run(["dpkg", "-x", str(package), str(unpacked)], check=True, timeout=300)
        try:
            unpacked.rename(TARGET)
        except OSError:
            assert PROMTOOL.is_file(), "promtool: another process left an incomplete tree"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"promtool is required in CI: {reason}")
    pytest.skip(reason)
