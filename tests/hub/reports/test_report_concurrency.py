"""A hundred efficiency reports at once by one signed-in auditor. The route reads the
person behind the sign-in in its session, then the report reads with a connection of
its own: the session's goes back to the pool first (decision 0056's Later note), so
that no request holds one connection while it waits for another. Before: 70 (SQLite)
or 87 (PostgreSQL) of 100 answered 503 after the pool's timeout (found by helper-85)."""

from collections.abc import Iterator

import pytest

from tests.hub.floods import flood
from tests.hub_testing import DATABASES, RunningHub, catalogue_hub, signed_in

IN_FLIGHT = 100  # well past the request pool's 20 + 20


@pytest.fixture(scope="module", params=DATABASES)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    with catalogue_hub(request, tmp_path_factory) as hub:
        yield hub


def test_a_hundred_reports_at_once_are_answered_and_others_are_not_held_up(
    hub: RunningHub,
) -> None:
    headers = signed_in(hub, "flood-auditor", {"role": "auditor"})

    sent = flood(
        hub.url,
        lambda http, n: http.get(f"{hub.url}/v1/reports/efficiency", headers=headers),
        IN_FLIGHT,
    )
    assert sent.statuses == {200: IN_FLIGHT}
    assert sent.bystander == 200
    assert sent.bystander_waited < 4
