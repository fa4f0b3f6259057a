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


def test_the_least_recently_used_bucket_goes_first_and_is_full_again() -> None:
    limits = buckets(capacity=1, per_second=0.001, max_keys=10)
    for n in range(1000):
        limits.take(f"k{n}", now=0.0)
    assert len(limits) == 10
    assert limits.wait("k0", now=0.0) == 0.0  # forgotten: full again, never refused more
    assert limits.wait("k999", now=0.0) > 0


def test_using_a_bucket_keeps_it() -> None:
    limits = buckets(capacity=1, per_second=0.001, max_keys=2)
    limits.take("old", now=0.0)
    limits.take("other", now=0.0)
    limits.wait("old", now=0.0)  # now the most recently used
    limits.take("new", now=0.0)
    assert limits.wait("old", now=0.0) > 0
    assert limits.wait("other", now=0.0) == 0.0


def test_one_refusal_a_key_is_reported_per_interval() -> None:
    limits = buckets()
    limits.take("a", now=0.0)
    reports = [limits.report_due("a", now=t, every=60) for t in (0.0, 1.0, 59.9, 60.0, 61.0)]
    assert reports == [True, False, False, True, False]
    assert limits.report_due("unknown", now=0.0, every=60) is False
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
