"""Refusals that name nobody are written to the audit log within a budget per source
(decision 0094). An outside verifier's review (helper-171) grew the public log by 300
entries with 300 requests carrying no credentials: anyone could write to the log, which
erases nothing, as fast as the hub answers. Past ``audit_unnamed_refusals_per_minute``
(after a burst of twice that) a source's such refusals are counted in
``onceonly_audit_unnamed_refusals_unlogged_total``, and one a minute is still written; a
refusal that names a client, person or department is always written. Over HTTP, on
SQLite and PostgreSQL, with the hub's clock in the test's hands."""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from onceonly.hub.kit.clock import ManualClock

from tests.hub_testing import RunningHub, added_audit_entries, running_hub, signed_in

PER_MINUTE = 2  # a burst of 4, then one every 30 s
UNLOGGED = re.compile(
    r'^onceonly_audit_unnamed_refusals_unlogged_total\{action="audit.query"\} (\S+)$', re.M
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def hub(database_url: str, tmp_path: Path, clock: ManualClock) -> Iterator[RunningHub]:
    with running_hub(
        database_url=database_url,
        data_dir=tmp_path / "hub",
        clock=clock,
        proxy_headers=True,  # the test plays two sources (X-Forwarded-For)
        audit_unnamed_refusals_per_minute=PER_MINUTE,
    ) as running:
        yield running


def _anonymous(hub: RunningHub, source: str, times: int) -> None:
    for _ in range(times):
        refused = httpx.get(f"{hub.url}/v1/audit/entries", headers={"X-Forwarded-For": source})
        assert refused.status_code == 401, refused.text


def _refused(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Without the entries of the test's own reads of the log (added_audit_entries)."""
    return [entry for entry in entries if entry["outcome"] == "refused"]


def _unlogged(hub: RunningHub) -> float:
    found = UNLOGGED.search(hub.metrics().text)
    return float(found.group(1)) if found else 0.0


def test_a_flood_of_anonymous_refusals_leaves_a_bounded_number_of_entries(
    hub: RunningHub, clock: ManualClock
) -> None:
    unlogged = _unlogged(hub)  # the process's counter: other hubs' tests counted too
    with added_audit_entries(hub, action="audit.query") as flood:
        _anonymous(hub, "192.0.2.7", 10)
    # the burst, then the first past it in the minute; the other five counted
    assert len(_refused(flood)) == 2 * PER_MINUTE + 1
    assert {(e["outcome"], e["reason"]) for e in _refused(flood)} == {("refused", "not-signed-in")}
    assert _unlogged(hub) - unlogged == 10 - len(_refused(flood))

    with added_audit_entries(hub, action="audit.query") as other:
        _anonymous(hub, "198.51.100.9", 2)  # another source has a budget of its own
    assert len(_refused(other)) == 2

    clock.advance(30)  # one refusal's worth of budget back; no report due yet
    with added_audit_entries(hub, action="audit.query") as later:
        _anonymous(hub, "192.0.2.7", 3)
    assert len(_refused(later)) == 1
    clock.advance(60)  # two more, and the first past them is written again
    with added_audit_entries(hub, action="audit.query") as minute_on:
        _anonymous(hub, "192.0.2.7", 5)
    assert len(_refused(minute_on)) == PER_MINUTE + 1


def test_a_refusal_that_names_a_person_is_always_written(hub: RunningHub) -> None:
    """Budgets are for refusals about nobody: one that names who asked is accounted
    for, however many there are."""
    administrator = signed_in(hub, "ada", {"role": "administrator"})
    headers = administrator | {"X-Forwarded-For": "192.0.2.8"}
    unlogged = _unlogged(hub)
    with added_audit_entries(hub, action="audit.query") as entries:
        for _ in range(3 * PER_MINUTE + 2):
            refused = httpx.get(f"{hub.url}/v1/audit/entries", headers=headers)
            assert refused.status_code == 403, refused.text
    assert len(_refused(entries)) == 3 * PER_MINUTE + 2
    assert {e["person"] for e in _refused(entries)} == {"ada"}
    assert _unlogged(hub) == unlogged
