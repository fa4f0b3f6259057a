"""The adapter's store holds tax debts, addresses and the served-log: its directory is
made 0700 and its database 0600, with SQLite's -wal and -shm files, whatever the
umask; an existing store that its group or others may read is warned about at open.

With umask 022 the store was made 0644 in a 0755 directory: any local user could
read the records and the served-log (the key beside it was 0600)."""

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from onceonly.adapters import RecordStore
from onceonly.adapters._keys import load_or_create_key

ITEM = "tax.debt-status"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o002, 0o000], ids=["umask 022", "umask 002", "umask 000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def test_a_new_store_is_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "var" / "tax" / "records.db"
    with RecordStore(path) as store:
        store.put(ITEM, "38001085718", {"has_debt": True})
        files = {side: path.with_name("records.db" + side) for side in ("", "-wal", "-shm")}
        assert all(file.exists() for file in files.values())  # WAL: all three while open
        assert {side: mode(file) for side, file in files.items()} == dict.fromkeys(files, 0o600)
    assert mode(path.parent) == 0o700


def test_a_data_directory_the_client_key_makes_first_is_private(tmp_path: Path, umask: int) -> None:
    """``onceonly adapter jwks`` (docs/adapters.md §3) makes the client key before the
    store: the directory it made was 0755 (a newcomer's review)."""
    key = tmp_path / "var" / "tax" / "client-key.jwk"
    load_or_create_key(key)
    assert (mode(key.parent), mode(key)) == (0o700, 0o600)


def test_an_existing_directory_is_left_as_it_is(tmp_path: Path) -> None:
    tmp_path.chmod(0o750)
    with RecordStore(tmp_path / "records.db"):
        pass
    assert mode(tmp_path) == 0o750


def test_a_store_others_may_read_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "records.db"
    with RecordStore(path) as store:
        store.put(ITEM, "38001085718", {"has_debt": True})
    path.chmod(0o644)

    with caplog.at_level(logging.WARNING, logger="adapters.store"), RecordStore(path):
        pass

    (warning,) = [r.getMessage() for r in caplog.records if r.name == "adapters.store"]
    assert str(path) in warning
    assert "mode 0644" in warning
    assert mode(path) == 0o644  # warned, not changed


def test_a_private_store_is_not_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "records.db"
    with caplog.at_level(logging.WARNING, logger="adapters.store"):
        RecordStore(path).close()
        RecordStore(path).close()
    assert not [r for r in caplog.records if r.name == "adapters.store"]
