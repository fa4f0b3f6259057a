"""``audit check-nodes`` and ``report rebuild`` open only a database that exists: a
missing SQLite file, or a data directory that is a file, is "could not check" (exit
2) in one line, and nothing is made (an operator's review: a wrong data directory was
made, with an empty onceonly.db; a file there gave a NotADirectoryError traceback)."""

from pathlib import Path

import pytest

from tests.hub.cli.conftest import Onceonly

COMMANDS = [
    pytest.param(("audit", "check-nodes"), "cannot check: the audit log in", id="check-nodes"),
    pytest.param(("report", "rebuild"), "cannot rebuild: the roll-ups in", id="rebuild"),
]


@pytest.mark.parametrize(("command", "says"), COMMANDS)
def test_a_missing_database_is_not_made(
    onceonly: Onceonly, tmp_path: Path, command: tuple[str, ...], says: str
) -> None:
    data = tmp_path / "wrong"
    status, out, err = onceonly(*command, data_dir=str(data))
    assert (status, out) == (2, "")
    assert err == (
        f"{says} sqlite:///{data}/onceonly.db: no such file:"
        " set ONCEONLY_DATA_DIR (or ONCEONLY_DATABASE_URL) to the hub's\n"
    )
    assert not data.exists()


@pytest.mark.parametrize(("command", "says"), COMMANDS)
def test_a_data_dir_that_is_a_file(
    onceonly: Onceonly, tmp_path: Path, command: tuple[str, ...], says: str
) -> None:
    data = tmp_path / "a-file"
    data.write_text("")
    status, out, err = onceonly(*command, data_dir=str(data))
    url = f"sqlite:///{data}/onceonly.db"
    assert (status, out, err) == (2, "", f"{says} {url}: {data} is not a directory (data_dir?)\n")


@pytest.mark.parametrize(("command", "says"), COMMANDS)
def test_an_existing_database_is_checked(
    onceonly: Onceonly, database_url: str, command: tuple[str, ...], says: str
) -> None:
    status, _, err = onceonly(*command, database_url=database_url)
    assert status == 0, err
