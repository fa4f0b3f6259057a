"""The group-commit writers' engine (decision 0056): a small pool of its own beside the
requests' engine, except for a database in memory, which a second engine would not see."""

from pathlib import Path

import pytest

from onceonly.hub import db


@pytest.mark.anyio
@pytest.mark.postgres
async def test_a_file_or_a_server_gets_a_pool_of_its_own_and_memory_shares(
    tmp_path: Path, postgres_url: str
) -> None:
    files = (
        f"sqlite:///{tmp_path / 'hub.db'}",
        f"sqlite:///{tmp_path / 'hub.db'}?timeout=10",  # parameters: still the file
        f"sqlite:///file:{tmp_path / 'uri.db'}?uri=true",
    )
    for url in (*files, postgres_url):
        engine = db.make_engine(url)
        writers = db.writers_engine(engine, url)
        try:
            assert writers is not engine
            assert writers.pool.size() == db.WRITERS_POOL_SIZE  # type: ignore[attr-defined]
            assert engine.pool.size() == db.POOL_SIZE  # type: ignore[attr-defined]
        finally:
            await writers.dispose()
            await engine.dispose()
    memory = (
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///file::memory:?uri=true",
    )
    for url in memory:
        engine = db.make_engine(url)
        try:
            assert db.writers_engine(engine, url) is engine  # another would not share it
        finally:
            await engine.dispose()
