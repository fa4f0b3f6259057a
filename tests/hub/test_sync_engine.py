"""The sync engine (migrations, operator commands) keeps SQLite transactions whole."""

from pathlib import Path

import pytest
import sqlalchemy as sa

from onceonly.hub.db import make_sync_engine


def test_a_sync_transaction_on_sqlite_rolls_back_as_one(tmp_path: Path) -> None:
    """The driver's own BEGIN is off (the hub chooses BEGIN or BEGIN IMMEDIATE): without
    the hub's BEGIN, engine.begin() committed each statement as it ran."""
    engine = make_sync_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))

    def half_a_change() -> None:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO t VALUES (1)"))
            conn.execute(sa.text("INSERT INTO t VALUES (2)"))
            raise RuntimeError("the second half of a change failed")

    with pytest.raises(RuntimeError):
        half_a_change()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar_one() == 0
    engine.dispose()
