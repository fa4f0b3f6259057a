"""One hub per module for the OpenAPI tests: SQLite, the starter catalogue imported,
the break-glass token on (``hub.keys.admin_token``)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub_testing import CATALOGUE, RunningHub, migrated_sqlite, running_hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[RunningHub]:
    database_url = migrated_sqlite(sqlite_template, tmp_path_factory.mktemp("db"))
    with running_hub(database_url=database_url, data_dir=tmp_path_factory.mktemp("hub")) as hub:
        with hub.admin() as admin:
            admin.import_catalogue(CATALOGUE)
        yield hub
