"""A JSON file given to the command line (``client put --jwks``, ``items register``) is
read up to the largest body a hub accepts, and refused beyond, in one line (an
operator's review: ``--jwks /dev/zero`` grew to 2.8 GB)."""

from pathlib import Path

import pytest

from onceonly.hub.cli.admin_client import MAX_FILE_BYTES

from tests.hub.cli.conftest import Onceonly


@pytest.mark.parametrize("source", ["/dev/zero", "big"])
def test_a_file_larger_than_a_body_is_refused_unread(
    onceonly: Onceonly, tmp_path: Path, source: str
) -> None:
    path = Path(source) if source.startswith("/") else tmp_path / source
    if not source.startswith("/"):
        path.write_bytes(b" " * (MAX_FILE_BYTES + 1))
    with pytest.raises(SystemExit) as stopped:
        onceonly(
            "client", "put", "c", "--department", "d", "--jwks", str(path),
            "--hub", "http://127.0.0.1:9",
        )  # fmt: skip
    assert (
        stopped.value.code
        == f"{path} is larger than {MAX_FILE_BYTES} bytes, more than a hub accepts in a body"
    )
