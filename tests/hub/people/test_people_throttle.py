"""The sign-in throttle: per account and source with growing delays, and a ceiling per
account that only many sources reach (docs/people.md, "Signing in with a password").

The rule that decides how long an attempt waits is a pure function, tested as a
table with the clock moved. Over HTTP (a real hub on loopback, both databases) the
hub's clock cannot be moved, so the stored failures are: :func:`age_failures` makes
every count older, as if time had passed.
"""

import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from onceonly.hub.db import WRITE_OPTION, make_sync_engine
from onceonly.hub.people.models import SignInFailure
from onceonly.hub.people.service import ACCOUNT_SOURCES, source_of, throttle_wait

from tests.hub_testing import (
    DATABASES,
    RunningHub,
    audit_entry_for,
    module_database,
    problem_type,
    running_hub,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ALLOWANCE = 1  # sign_in_max_failures of the hub below
WINDOW = 900
_hosts = itertools.count(1)


# --- the rule, pure -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "seconds_ago", "expected"),
    [
        (0, None, 0),  # nothing counted
        (4, 0, 0),  # within the allowance of 5
        (5, 0, 2),  # the first failure past it: 2 s after it
        (5, 1, 1),
        (5, 2, 0),
        (6, 0, 4),  # then 4, 8, 16...
        (7, 0, 8),
        (8, 5, 11),
        (14, 0, 450),  # 2^10 s, capped at the maximum delay
        (10_000, 0, 450),  # however many
        (14, 449.5, 1),  # a part of a second is a second (Retry-After is whole)
        (14, 450, 0),
        (6, -3, 7),  # a failure stored a little ahead of this replica's clock
    ],
)
def test_an_attempt_waits_two_to_the_failures_past_the_allowance(
    failures: int, seconds_ago: float | None, expected: int
) -> None:
    last = None if seconds_ago is None else NOW - timedelta(seconds=seconds_ago)
    wait = throttle_wait(failures, last, allowance=5, now=NOW, max_delay=450)
    assert wait == expected


def test_a_time_stored_without_an_offset_is_read_as_utc() -> None:
    naive = (NOW - timedelta(seconds=1)).replace(tzinfo=None)  # as SQLite gives it back
    assert throttle_wait(5, naive, allowance=5, now=NOW, max_delay=450) == 1


@pytest.mark.parametrize(
    ("address", "source"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),  # IPv4 through an IPv6 socket
        ("unknown", "unknown"),
    ],
)
def test_an_ipv6_source_is_its_64_bit_prefix(address: str, source: str) -> None:
    assert source_of(address) == source


# --- over HTTP ------------------------------------------------------------------------


@pytest.fixture(scope="module", params=DATABASES)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    with running_hub(
        database_url=module_database(request, tmp_path_factory),
        data_dir=tmp_path_factory.mktemp("hub"),
        proxy_headers=True,  # each test plays sources of its own (X-Forwarded-For)
        sign_in_max_failures=ALLOWANCE,
        sign_in_address_max_failures=1000,
        sign_in_window=WINDOW,
    ) as running:
        yield running


def new_address() -> str:
    return f"198.51.100.{next(_hosts)}"


def person(hub: RunningHub) -> tuple[str, str]:
    username, password = f"t{uuid.uuid4().hex[:10]}", f"Throttle-{uuid.uuid4().hex}"
    response = httpx.put(
        f"{hub.url}/v1/admin/people/{username}",
        json={"password": password},
        headers={"Authorization": f"Bearer {hub.keys.admin_token}"},
    )
    assert response.status_code == 200, response.text
    return username, password


def sign_in(hub: RunningHub, username: str, password: str, *, source: str) -> httpx.Response:
    return httpx.post(
        f"{hub.url}/v1/people/sign-in",
        json={"username": username, "password": password},
        headers={"X-Forwarded-For": source},
    )


def age_failures(hub: RunningHub, seconds: float) -> None:
    """Every stored failure ``seconds`` older: the hub's clock moved on that much."""
    # The write lock first (BEGIN IMMEDIATE on SQLite): a read that then writes fails
    # at once if the hub's writers committed in between.
    engine = make_sync_engine(hub.settings.resolved_database_url)
    try:
        with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
            table = SignInFailure.__table__  # type: ignore[attr-defined]
            rows = conn.execute(sa.select(table.c.key, table.c.last_failure_at)).all()
            for key, last in rows:
                older = last - timedelta(seconds=seconds)
                conn.execute(
                    sa.update(table).where(table.c.key == key).values(last_failure_at=older)
                )
    finally:
        engine.dispose()


def assert_throttled(hub: RunningHub, response: httpx.Response, *, at_most: int) -> None:
    assert response.status_code == 429, response.text
    assert problem_type(response) == "sign-in-throttled"
    assert 0 < int(response.headers["retry-after"]) <= at_most
    entry = audit_entry_for(hub, response, action="person.sign-in")
    assert (entry["outcome"], entry["reason"]) == ("refused", "sign-in-throttled")


def test_one_source_guessing_without_end_never_locks_the_owner_out(hub: RunningHub) -> None:
    """Whatever one attacker does from one source, the right password from another
    source signs in: the account's ceiling is only reached from many sources."""
    username, password = person(hub)
    attacker = new_address()
    for guess in range(2 * ACCOUNT_SOURCES * ALLOWANCE):
        if guess:
            age_failures(hub, WINDOW / 2)  # the longest wait passes, never a quiet window
        answer = sign_in(hub, username, f"guess-{guess}", source=attacker)
        assert answer.status_code == 401, (guess, answer.text)
    assert_throttled(hub, sign_in(hub, username, password, source=attacker), at_most=WINDOW // 2)
    owner = sign_in(hub, username, password, source=new_address())
    assert owner.status_code == 200, owner.text


def test_each_failure_past_the_allowance_doubles_the_wait_of_its_source(
    hub: RunningHub,
) -> None:
    username, password = person(hub)
    source = new_address()
    for waited in (2, 4, 8, 16):
        assert sign_in(hub, username, "not-it", source=source).status_code == 401
        throttled = sign_in(hub, username, password, source=source)  # even the right one
        assert_throttled(hub, throttled, at_most=waited)
        assert int(throttled.headers["retry-after"]) > waited - 2  # 2 s for a slow machine
        age_failures(hub, waited)
    assert sign_in(hub, username, password, source=source).status_code == 200


def test_the_right_password_clears_its_sources_count(hub: RunningHub) -> None:
    username, password = person(hub)
    source = new_address()
    assert sign_in(hub, username, "not-it", source=source).status_code == 401
    assert_throttled(hub, sign_in(hub, username, password, source=source), at_most=2)
    age_failures(hub, 2)
    assert sign_in(hub, username, password, source=source).status_code == 200
    assert sign_in(hub, username, "not-it", source=source).status_code == 401  # free again


def test_a_count_is_forgotten_after_a_quiet_window(hub: RunningHub) -> None:
    username, password = person(hub)
    source = new_address()
    for guess in range(3):
        if guess:
            age_failures(hub, WINDOW / 2)
        assert sign_in(hub, username, "not-it", source=source).status_code == 401
    assert_throttled(hub, sign_in(hub, username, password, source=source), at_most=8)
    age_failures(hub, WINDOW + 1)
    assert sign_in(hub, username, "not-it", source=source).status_code == 401
    # counted from nothing again: one failure (the allowance), so 2 s, not 16 s
    assert_throttled(hub, sign_in(hub, username, password, source=source), at_most=2)


def test_many_sources_together_slow_every_attempt_on_the_account(hub: RunningHub) -> None:
    """A distributed guess reaches the account's ceiling: then even a source that has
    not failed waits, until the delay has passed."""
    username, password = person(hub)
    for _ in range(ACCOUNT_SOURCES * ALLOWANCE):
        assert sign_in(hub, username, "a-guess", source=new_address()).status_code == 401
    assert_throttled(hub, sign_in(hub, username, password, source=new_address()), at_most=2)
    age_failures(hub, 2)
    assert sign_in(hub, username, password, source=new_address()).status_code == 200


def test_the_addresses_of_one_ipv6_64_are_one_source(hub: RunningHub) -> None:
    username, password = person(hub)
    assert sign_in(hub, username, "not-it", source="2001:db8:77:1::1").status_code == 401
    same = sign_in(hub, username, password, source="2001:db8:77:1:aaaa::2")
    assert_throttled(hub, same, at_most=2)
    other = sign_in(hub, username, password, source="2001:db8:77:2::1")
    assert other.status_code == 200, other.text
