"""``onceonly demo`` in a shell set up for a real hub: its own hub reads none of the
operator's ``ONCEONLY_*`` settings, so the story neither lands in the real hub's
database or data directory nor is stopped by its mode or its break-glass token."""

import os
import subprocess
import sys
from pathlib import Path


def test_the_demo_ignores_the_operators_onceonly_settings(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    config = real / "hub.toml"
    config.write_text(f'data_dir = "{real / "from-config"}"\n', encoding="utf-8")
    operator = {
        "ONCEONLY_DATABASE_URL": f"sqlite:///{real / 'hub.db'}",
        "ONCEONLY_DATA_DIR": str(real / "from-env"),
        "ONCEONLY_CONFIG": str(config),
        "ONCEONLY_ADMIN_TOKEN": "the-real-hubs-token",
        "ONCEONLY_PASSWORD_TIME_COST": "3",
    }
    done = subprocess.run(
        [sys.executable, "-m", "onceonly.hub", "demo", "--data-dir", str(tmp_path / "demo")],
        cwd=tmp_path,
        env={**os.environ, **operator},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Every step succeeded" in done.stdout
    assert sorted(path.name for path in real.iterdir()) == ["hub.toml"]  # nothing written
    assert (tmp_path / "demo" / "hub" / "onceonly.db").is_file()
