"""One hub per module for the OpenAPI tests: SQLite, the starter catalogue imported,
the break-glass token on (``hub.keys.admin_token``)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub_testing import RunningHub, migrated_sqlite, running_hub


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory: pytest.TempPathFactory, catalogued_sqlite_template: Path
) -> Iterator[RunningHub]:
    database_url = migrated_sqlite(catalogued_sqlite_template, tmp_path_factory.mktemp("db"))
    with running_hub(database_url=database_url, data_dir=tmp_path_factory.mktemp("hub")) as hub:
        yield hub
