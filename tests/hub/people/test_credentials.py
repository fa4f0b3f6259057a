"""Password hashing follows the configured argon2id cost (tests lower it; production
refuses less than RFC 9106's low-memory profile), and a hash made at any cost verifies."""

from collections.abc import Iterator

import pytest

from onceonly.hub.config import Settings
from onceonly.hub.people import credentials

PASSWORD = "correct horse battery staple"


@pytest.fixture
def restore_cost() -> Iterator[None]:
    yield
    default = Settings()
    credentials.configure_password_hashing(
        time_cost=default.password_time_cost, memory_kib=default.password_memory_kib
    )


@pytest.mark.usefixtures("restore_cost")
@pytest.mark.parametrize(("time_cost", "memory_kib"), [(1, 64), (2, 1024)])
def test_a_new_hash_carries_the_configured_cost(time_cost: int, memory_kib: int) -> None:
    credentials.configure_password_hashing(time_cost=time_cost, memory_kib=memory_kib)
    stored = credentials.hash_password(PASSWORD)
    assert f"$m={memory_kib},t={time_cost},p=4$" in stored
    assert credentials.verify_password(stored, PASSWORD)
    assert not credentials.verify_password(stored, PASSWORD + "!")


@pytest.mark.usefixtures("restore_cost")
def test_a_hash_made_at_another_cost_still_verifies() -> None:
    stored = credentials.hash_password(PASSWORD)  # the production default
    assert "$m=65536,t=3,p=4$" in stored
    credentials.configure_password_hashing(time_cost=1, memory_kib=64)
    assert credentials.verify_password(stored, PASSWORD)
    assert not credentials.verify_password(None, PASSWORD)


def test_importing_the_hub_hashes_no_password() -> None:
    """The hash an unknown account is checked against is made at the hub's start-up
    (configure_password_hashing), not at import: every command of the CLI imports the
    hub, and one argon2id hash at production cost is most of a second of CPU."""
    import subprocess  # here, not at the top: conftest would call the whole module "wire"
    import sys

    probe = (
        "import onceonly.hub.app\n"
        "from onceonly.hub.people import credentials\n"
        "assert credentials._DUMMY_HASH is None\n"
        "credentials.configure_password_hashing(time_cost=1, memory_kib=64)\n"
        "assert credentials._DUMMY_HASH is not None\n"
        "assert not credentials.verify_password(None, 'anything')\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)
