"""``audit export --file`` makes a file for its user alone: it holds entries' content,
who read whose records (an operator's review: it was made 0644 under the umask)."""

import os
import stat
from pathlib import Path

from onceonly.hub.cli import audit_commands


def test_the_export_file_is_the_users_alone(tmp_path: Path) -> None:
    target = tmp_path / "audit.jsonl"
    old = os.umask(0o022)
    try:
        with audit_commands._written(target) as out:
            out.write(b"{}\n")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"{}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
