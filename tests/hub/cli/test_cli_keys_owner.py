"""Key-writing commands run as root leave keys the hub's user can read, and
`config check` run as root says which key file that user cannot read (decision 0076).

An operator ran ``set -a; . hub.env; onceonly keys rotate`` as root: ``state.json`` and
the new key became ``root:root 0600``, and every replica (user ``onceonly``) answered
500 to token requests and to the JWKS. Here the hub's user is ``nobody`` (65534), the
owner of the data directory, as ``onceonly`` owns ``/var/lib/onceonly``."""

import os
import re
from pathlib import Path

import pytest

from onceonly.hub.cli import main

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="only root can run a command as root and chown to another user"
)

HUB_USER = 65534  # nobody, and its group nogroup


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A development hub's data directory owned by the hub's user (SQLite inside)."""
    for variable in [v for v in os.environ if v.upper().startswith("ONCEONLY_")]:
        monkeypatch.delenv(variable)
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, HUB_USER, HUB_USER)
    monkeypatch.setenv("ONCEONLY_DATA_DIR", str(data))
    monkeypatch.setenv("ONCEONLY_ISSUER", "http://127.0.0.1:8000")
    return data


def not_the_hubs(directory: Path) -> list[str]:
    """Every file and folder under ``directory`` (locks and all) that the hub's user
    does not own, with its owner."""
    return [
        f"{path.relative_to(directory)} {info.st_uid}:{info.st_gid}"
        for path in [directory, *directory.rglob("*")]
        if ((info := path.lstat()).st_uid, info.st_gid) != (HUB_USER, HUB_USER)
    ]


def test_keys_init_rotate_and_rotate_derivation_as_root_leave_the_hubs_users_files(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = data_dir / "keys"
    assert main(["keys", "init"]) == 0
    assert not_the_hubs(keys) == []
    assert {"signing", "derivation.key", "checkpoint.jwk", "audit-origin"} <= {
        path.name for path in keys.iterdir()
    }

    capsys.readouterr()
    assert main(["keys", "rotate", "--activate-after", "20"]) == 0
    said = capsys.readouterr().out  # when, as the operator copies the key before it
    moment = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    assert re.search(rf"signs from {moment} \(\+20 s\)\n", said), said
    assert re.search(rf"stays published until {moment}\n", said), said
    assert len(list((keys / "signing").glob("*.jwk"))) == 2
    assert not_the_hubs(keys) == []

    assert main(["keys", "rotate-derivation"]) == 0
    assert (keys / "derivation.key.previous").is_file()
    assert not_the_hubs(keys) == []
    capsys.readouterr()


def test_config_check_as_root_names_a_key_file_the_hubs_user_cannot_read(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "init"]) == 0
    assert main(["config", "check"]) == 0
    assert "ok keys: loaded from" in capsys.readouterr().out

    state = data_dir / "keys" / "signing" / "state.json"
    os.chown(state, 0, 0)  # as `cp` run as root, or a version before decision 0076, leaves it
    assert main(["config", "check"]) == 1
    captured = capsys.readouterr()
    assert "ok keys" not in captured.out
    assert captured.err.splitlines() == [
        f"key file {state} is root:root (mode 0600): the hub's user nobody, owner of"
        f" {data_dir / 'keys'}, cannot read it: chown nobody:nogroup {state}"
    ]

    os.chown(state, 0, HUB_USER)
    state.chmod(0o440)  # root's, but its group (the hub's) may read it: a mounted Secret
    assert main(["config", "check"]) == 0
    assert "ok keys: loaded from" in capsys.readouterr().out


def test_config_check_as_root_names_a_key_folder_the_hubs_user_cannot_enter(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "init"]) == 0
    signing = data_dir / "keys" / "signing"
    os.chown(signing, 0, 0)
    assert main(["config", "check"]) == 1
    assert f"folder {signing} is root:root (mode 0700)" in capsys.readouterr().err
