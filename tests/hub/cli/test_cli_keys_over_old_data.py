"""In development too, ``serve`` and ``config check`` refuse to make a new key beside
data an old one made, as ``keys init`` does (an operator's review: a development hub
whose pseudonym.key was missing made a new one over a database holding audit entries,
which split every subject's history, while config check said the key would be made)."""

import pytest

from tests.hub.cli.conftest import Onceonly
from tests.hub_testing import module_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_with_entries(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A database of this test's own holding audit entries (the catalogue's import)."""
    return module_database(request, tmp_path_factory, catalogued=True)


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(("keys", "init"), id="keys-init"),
        pytest.param(("config", "check"), id="config-check"),
        pytest.param(("serve", "--port", "1"), id="serve"),  # refused before it binds
    ],
)
def test_a_missing_pseudonym_key_is_not_made_over_old_entries(
    onceonly: Onceonly, database_with_entries: str, command: tuple[str, ...]
) -> None:
    status, out, err = onceonly(*command, database_url=database_with_entries)
    assert status == 1, out
    assert len(err.splitlines()) == 1, err
    assert "no keys created: pseudonym.key" in err
    assert "but the database holds what" in err
    assert "restore" in err


def test_keys_are_still_made_for_an_empty_database(onceonly: Onceonly) -> None:
    status, out, _ = onceonly("config", "check")
    assert status == 0
    assert "ok keys: 6 of the key files are created at the first start" in out
