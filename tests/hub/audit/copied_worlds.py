"""The exchange world of ``tests.hub.exchange_world``, built once per module and
database and copied for each test that changes it for good (see ``hub_copies``).

The catalogue, the consumer's client and its grant are what cost (the catalogue
import alone some 0.6 s of CPU): they are built once by ``exchange_world`` itself and
saved; each test gets a copy of that database and data directory, a hub of its own
on them, and the owner's adapter with a store of its own, pointed at by the owner
department, as ``exchange_world`` gives them.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey

from tests.hub.audit.hub_copies import Copies
from tests.hub.exchange_world import World, exchange_world, owners_adapter
from tests.hub_testing import running_hub


def _build(database_url: str, scratch: Path) -> tuple[Path, dict[str, Any]]:
    with exchange_world(database_url=database_url, tmp_path=scratch) as world:
        key = world.consumer_key.as_dict(private=True)
    return scratch / "hub", {"consumer_key": key}


@contextmanager
def copied_exchange_world(
    copies: Copies, *, database_url: str, tmp_path: Path, **settings: Any
) -> Iterator[World]:
    """What ``exchange_world(database_url=..., tmp_path=...)`` gives, from a copy of the
    module's saved world (``database_url``: conftest's fresh, empty database)."""
    data_dir = tmp_path / "hub"
    extra = copies.world("exchange", database_url, data_dir, _build)
    consumer_key = ECKey.import_key(extra["consumer_key"])
    with (
        running_hub(database_url=database_url, data_dir=data_dir, **settings) as hub,
        owners_adapter(hub, tmp_path) as owner,
    ):
        yield World(hub=hub, consumer_key=consumer_key, **owner)
