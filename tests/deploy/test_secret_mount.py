"""Keys mounted from Kubernetes Secrets pass the start-up check (the review found that
the shipped manifests' hub could never start), and database URLs leak no secret into
the check's messages."""

import shutil
from pathlib import Path

import pytest

from onceonly.hub.audit.checkpoints import load_signer
from onceonly.hub.cli import startup
from onceonly.hub.config import Settings
from onceonly.hub.keys import HubKeys


def _keys(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path / "made", database_url=f"sqlite:///{tmp_path / 'hub.db'}")
    HubKeys.load(settings.keys_dir, create=True)
    load_signer(keys_dir=settings.keys_dir, origin=settings.resolved_audit_origin, create=True)
    return settings


def _as_kubelet_mounts(source: Path, mount: Path) -> None:
    """What kubelet writes for a Secret volume: the files in a ``..<time>`` folder,
    ``..data`` pointing at it, a symlink per key; read-only, readable by fsGroup."""
    stamp = mount / "..2026_12_06_05_00_00.000000001"
    stamp.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file() and not path.name.startswith("."):
            shutil.copyfile(path, stamp / path.name)
            (stamp / path.name).chmod(0o440)
            (mount / path.name).symlink_to(Path("..data") / path.name)
    (mount / "..data").symlink_to(stamp.name)


def test_a_secret_mount_read_only_for_the_group_passes_the_key_check(tmp_path: Path) -> None:
    made = _keys(tmp_path)
    mounted = tmp_path / "pod" / "keys"
    _as_kubelet_mounts(made.keys_dir, mounted)
    _as_kubelet_mounts(made.keys_dir / "signing", mounted / "signing")
    problems = startup._mode_problems(mounted)
    assert problems == []
    assert sorted(p.name for p in startup._files(mounted)) == sorted(
        p.name for p in startup._files(made.keys_dir)
    )


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o444, 0o660])
def test_a_key_file_writable_or_readable_beyond_a_read_only_group_is_refused(
    tmp_path: Path, mode: int
) -> None:
    made = _keys(tmp_path)
    (made.keys_dir / "pseudonym.key").chmod(mode)
    problems = startup._mode_problems(made.keys_dir)
    assert len(problems) == 1
    assert "pseudonym.key is open to others" in problems[0]


def test_database_messages_hide_every_part_of_the_credentials() -> None:
    url = "postgresql://hub:p@ss-LEAK1@127.0.0.1:9/onceonly?sslmode=require&password=LEAK3"
    name = startup.database_name(url)
    assert "LEAK" not in name
    assert "p@ss" not in name
    reason = startup.database_unreachable(url)
    assert reason is not None
    assert "LEAK" not in reason
    assert "ss-" not in reason
    assert startup.database_name("postgresql://h@db:notaport/x").startswith("the configured")
