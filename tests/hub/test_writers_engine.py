"""The group-commit writers' engine (decision 0056): a small pool of its own beside the
requests' engine, except where a second engine would not see the same database."""

from pathlib import Path

import pytest

from onceonly.hub import db


@pytest.mark.anyio
@pytest.mark.postgres
async def test_a_file_or_a_server_gets_a_pool_of_its_own_and_memory_shares(
    tmp_path: Path, postgres_url: str
) -> None:
    for url in (f"sqlite:///{tmp_path / 'hub.db'}", postgres_url):
        engine = db.make_engine(url)
        writers = db.writers_engine(engine, url)
        try:
            assert writers is not engine
            assert writers.pool.size() == db.WRITERS_POOL_SIZE  # type: ignore[attr-defined]
            assert engine.pool.size() == db.POOL_SIZE  # type: ignore[attr-defined]
        finally:
            await writers.dispose()
            await engine.dispose()
    for url in ("sqlite://", "sqlite:///:memory:", f"sqlite:///file:{tmp_path}/x.db?uri=true"):
        engine = db.make_engine(url)
        try:
            assert db.writers_engine(engine, url) is engine  # another would not share it
        finally:
            await engine.dispose()
