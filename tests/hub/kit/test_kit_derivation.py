"""HKDF-SHA-256 (RFC 5869) and a derivation root that rotates: kept, private, followed
by every process that shares the file, on a clock we control."""

import os
import stat
from pathlib import Path

import pytest

from onceonly.hub.kit import derivation
from onceonly.hub.kit.derivation import RootFile, UnknownRoot
from onceonly.hub.kit.keyfiles import MissingKeyError


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_hkdf_gives_the_rfc5869_test_case_3() -> None:
    # RFC 5869 Appendix A.3: SHA-256, zero-length salt and info (a salt of None is the
    # same: HashLen zero bytes, §2.2).
    okm = derivation.hkdf_sha256(b"\x0b" * 22, info=b"", length=42)
    assert okm.hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


def test_each_info_gives_a_key_of_its_own_and_the_root_id_is_one_of_them() -> None:
    secret = os.urandom(32)
    root = derivation.Root(secret)
    assert len({root.derive(b"a"), root.derive(b"b"), root.derive(b"")}) == 3
    assert root.derive(b"a") == derivation.hkdf_sha256(secret, info=b"a")
    assert root.id == root.derive(derivation.ROOT_ID_INFO)[:4].hex()
    assert secret.hex() not in repr(root)


def test_the_root_is_created_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "derivation.key"
    first = RootFile(path, create=True).current()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert RootFile(path, create=True).current().derive(b"x") == first.derive(b"x")


def test_a_missing_root_stops_start_up_when_creation_is_not_allowed(tmp_path: Path) -> None:
    with pytest.raises(MissingKeyError, match="onceonly keys init"):
        RootFile(tmp_path / "derivation.key", create=False)


def test_rotation_keeps_the_previous_root_and_forgets_the_one_before(tmp_path: Path) -> None:
    roots = RootFile(tmp_path / "derivation.key", create=True)
    first = roots.current()
    second = roots.rotate()
    assert roots.current().id == second.id != first.id
    assert roots.by_id(first.id).derive(b"x") == first.derive(b"x")
    assert stat.S_IMODE(roots.previous_path.stat().st_mode) == 0o600
    roots.rotate()
    with pytest.raises(UnknownRoot):
        roots.by_id(first.id)


def test_another_process_sees_a_rotation_after_its_reload_interval(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "derivation.key"
    replica = RootFile(path, create=True, reload_interval=5.0, clock=clock)
    before = replica.current()
    after = RootFile(path, create=False).rotate()
    clock.now += 4.9
    assert replica.current().id == before.id
    clock.now += 0.2
    assert replica.current().id == after.id
    assert replica.by_id(before.id).id == before.id


def test_an_unknown_root_id_is_looked_for_at_once_but_at_most_once_a_second(
    tmp_path: Path,
) -> None:
    clock = Clock()
    path = tmp_path / "derivation.key"
    replica = RootFile(path, create=True, reload_interval=3600, clock=clock)
    rotator = RootFile(path, create=False)
    new = rotator.rotate()
    assert replica.by_id(new.id).id == new.id  # a value sealed elsewhere, under the new root
    newer = rotator.rotate()
    clock.now += 0.5
    with pytest.raises(UnknownRoot):
        replica.by_id(newer.id)
    clock.now += 0.5
    assert replica.by_id(newer.id).id == newer.id


def test_rotating_a_missing_root_is_refused(tmp_path: Path) -> None:
    roots = RootFile(tmp_path / "derivation.key", create=True)
    (tmp_path / "derivation.key").unlink()
    with pytest.raises(MissingKeyError):
        roots.rotate()
