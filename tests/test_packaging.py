"""The import names are namespaced (decision 0021): the folders hub/ and adapters/ are
installed as onceonly.hub and onceonly.adapters, and nothing generic at the top level."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_folder_with_python_code_is_a_listed_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    data = {"onceonly.config", "onceonly.schemas", "onceonly.schemas.items"}
    data |= {"onceonly.schemas.versions"}  # folders of data only (catalogue, example config)
    assert data <= listed
    folders = {
        "onceonly." + ".".join(path.parent.relative_to(ROOT).parts)
        for top in ("hub", "adapters")
        for path in (ROOT / top).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert listed - data == folders


def test_only_the_namespaced_names_are_importable(tmp_path: Path) -> None:
    # From an unrelated directory that holds folders named like ours: they must not
    # shadow the SDK, and the installed project offers no top-level hub or adapters.
    (tmp_path / "adapters").mkdir()
    (tmp_path / "adapters" / "__init__.py").write_text("raise ImportError('shadowed')\n")
    probe = (
        "import importlib.util, onceonly.adapters, onceonly.hub\n"
        "print(onceonly.adapters.HubClient.__module__)\n"
        "print(importlib.util.find_spec('hub'))\n"
    )
    # Not isolated (-I): the working directory comes first on sys.path, as for a user.
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, env={}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["onceonly.adapters._client", "None"]
