"""Token buckets by key in bounded memory (onceonly.hub.kit.rate_limit, decision 0051)."""

import pytest

from onceonly.hub.kit.rate_limit import TokenBuckets, retry_after


def buckets(
    *, capacity: float = 2, per_second: float = 0.5, max_keys: int = 100
) -> TokenBuckets[str]:
    return TokenBuckets(capacity=capacity, per_second=per_second, max_keys=max_keys)


def test_a_key_never_spent_waits_for_nothing_and_is_kept_nowhere() -> None:
    limits = buckets()
    assert [limits.wait(f"made-up-{n}", now=0.0) for n in range(1000)] == [0.0] * 1000
    limits.give_back("made-up-0", now=0.0)
    assert len(limits) == 0


def test_a_spent_bucket_waits_until_one_token_has_refilled() -> None:
    limits = buckets(capacity=2, per_second=0.5)
    limits.take("a", now=0.0)
    assert limits.wait("a", now=0.0) == 0.0  # one token left
    limits.take("a", now=0.0)
    assert limits.wait("a", now=0.0) == 2.0
    assert limits.wait("a", now=1.0) == 1.0
    assert limits.wait("a", now=2.0) == 0.0


def test_an_empty_bucket_runs_up_no_debt() -> None:
    limits = buckets(capacity=1, per_second=1)
    for _ in range(50):
        limits.take("a", now=0.0)
    assert limits.wait("a", now=0.0) == 1.0


def test_a_bucket_refills_to_its_capacity_and_no_further() -> None:
    limits = buckets(capacity=2, per_second=1)
    limits.take("a", now=0.0)
    limits.give_back("a", now=0.0)
    limits.give_back("a", now=100.0)
    for _ in range(2):
        limits.take("a", now=100.0)
    assert limits.wait("a", now=100.0) == 1.0


def test_a_clock_that_steps_back_refills_nothing() -> None:
    limits = buckets(capacity=1, per_second=1)
    limits.take("a", now=10.0)
    assert limits.wait("a", now=5.0) == 1.0
    assert limits.wait("a", now=6.0) == 0.0


def test_a_spent_bucket_is_never_forgotten_to_make_room() -> None:
    """Before: the least recently used bucket went, spent or not, and came back full."""
    limits = buckets(capacity=1, per_second=0.001, max_keys=10)
    for n in range(10):
        limits.take(f"k{n}", now=0.0)
    assert limits.wait("new", now=0.0) > 0  # no room: the new key waits
    assert len(limits) == 10
    assert all(limits.wait(f"k{n}", now=0.0) > 0 for n in range(10))


def test_a_refilled_bucket_makes_room_for_a_new_key() -> None:
    limits = buckets(capacity=1, per_second=1, max_keys=10)
    for n in range(10):
        limits.take(f"k{n}", now=float(n))  # k0 has refilled at 1.0, k9 at 10.0
    assert limits.wait("new", now=5.0) == 0.0
    limits.take("new", now=5.0)
    assert (len(limits), "new" in limits) == (10, True)
    assert all(limits.wait(f"k{n}", now=5.0) > 0 for n in range(5, 10))


def test_a_refilled_bucket_behind_spent_ones_makes_room() -> None:
    limits = buckets(capacity=1, per_second=0.001, max_keys=4)
    limits.take("spent-1", now=0.0)
    limits.take("spent-2", now=0.0)
    limits.take("given-back", now=0.0)
    limits.give_back("given-back", now=0.0)  # full again: it carries nothing
    limits.take("spent-3", now=0.0)
    limits.take("new", now=0.0)
    kept = {key for key in ("spent-1", "spent-2", "spent-3", "given-back", "new") if key in limits}
    assert kept == {"spent-1", "spent-2", "spent-3", "new"}


def test_a_refilled_bucket_is_found_however_many_spent_ones_come_first() -> None:
    """Each new key looks at a few buckets only, and moves those it cannot let go
    behind the others: the next one looks further."""
    limits = buckets(capacity=1, per_second=0.001, max_keys=100)
    for n in range(99):
        limits.take(f"spent-{n}", now=0.0)
    limits.take("given-back", now=0.0)
    limits.give_back("given-back", now=0.0)
    waits = [limits.wait("new", now=0.0) for _ in range(13)]
    assert [wait > 0 for wait in waits] == [True] * 12 + [False]
    assert all(f"spent-{n}" in limits for n in range(99))


def test_a_new_key_with_no_room_waits_until_a_bucket_has_refilled() -> None:
    limits = buckets(capacity=2, per_second=0.5, max_keys=1)
    limits.take("a", now=0.0)
    assert limits.wait("b", now=0.0) == 2.0  # "a" is full again after 2 s
    with pytest.raises(OverflowError, match="no room"):
        limits.take("b", now=0.0)
    assert limits.wait("b", now=2.0) == 0.0
    limits.take("b", now=2.0)
    assert ("a" in limits, "b" in limits) == (False, True)


def test_keys_refused_for_want_of_room_are_reported_together() -> None:
    limits = buckets(capacity=1, per_second=0.001, max_keys=1)
    limits.take("a", now=0.0)
    times = (0.0, 1.0, 59.9, 60.0)
    reports = [limits.report_due(f"new-{n}", now=t, every=60) for n, t in enumerate(times)]
    assert reports == [True, False, False, True]
    assert len(limits) == 1


def test_one_refusal_a_key_is_reported_per_interval() -> None:
    limits = buckets()
    limits.take("a", now=0.0)
    reports = [limits.report_due("a", now=t, every=60) for t in (0.0, 1.0, 59.9, 60.0, 61.0)]
    assert reports == [True, False, False, True, False]
    assert len(limits) == 1


@pytest.mark.parametrize(
    ("wait", "seconds"), [(0.0, 1), (0.001, 1), (1.0, 1), (1.2, 2), (59.01, 60)]
)
def test_retry_after_is_whole_seconds_rounded_up(wait: float, seconds: int) -> None:
    assert retry_after(wait) == seconds


@pytest.mark.parametrize(
    "bounds",
    [
        {"capacity": 0, "per_second": 1, "max_keys": 1},
        {"capacity": 1, "per_second": 0, "max_keys": 1},
        {"capacity": 1, "per_second": 1, "max_keys": 0},
    ],
)
def test_bounds_that_would_refuse_everything_are_refused(bounds: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="at least"):
        TokenBuckets(**bounds)  # type: ignore[arg-type]
