"""A least recently used cache with a share per owner (hub/kit/fair_lru.py)."""

import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onceonly.hub.kit.fair_lru import FairLru


def lru(*, max_entries: int = 100, max_per_owner: int = 2) -> FairLru[str, str]:
    return FairLru(max_entries=max_entries, max_per_owner=max_per_owner)


def put_all(cache: FairLru[str, str], owner: str, *keys: str) -> None:
    for key in keys:
        cache.put(key, f"value of {key}", owner=owner)


def held(cache: FairLru[str, str], *keys: str) -> list[bool]:
    """Which of ``keys`` are kept (looked up without making them more recent)."""
    return [key in cache for key in keys]


def test_a_kept_value_is_found_and_a_missing_one_is_none() -> None:
    cache = lru()
    put_all(cache, "a", "a1")
    assert cache.get("a1") == "value of a1"
    assert cache.get("a2") is None
    assert len(cache) == 1


def test_one_owner_over_its_share_loses_its_own_least_recently_used() -> None:
    cache = lru(max_per_owner=2)
    put_all(cache, "b", "b1")
    put_all(cache, "a", "a1", "a2")
    assert cache.get("a1") is not None  # used: a2 is now a's least recently used
    put_all(cache, "a", "a3")
    assert held(cache, "a1", "a2", "a3", "b1") == [True, False, True, True]


def test_one_owner_flooding_pushes_out_no_one_else() -> None:
    cache = lru(max_entries=10, max_per_owner=3)
    put_all(cache, "honest", "h1", "h2")
    put_all(cache, "flood", *(f"f{n}" for n in range(1000)))
    assert held(cache, "h1", "h2", "f997", "f998", "f999", "f996") == [True] * 5 + [False]
    assert len(cache) == 5


def test_a_full_cache_drops_the_least_recently_used_of_all_for_an_owner_below_its_share() -> None:
    cache = lru(max_entries=3, max_per_owner=2)
    put_all(cache, "a", "a1")
    put_all(cache, "b", "b1")
    put_all(cache, "c", "c1")
    assert cache.get("a1") is not None  # b1 is now the least recently used of all
    put_all(cache, "d", "d1")
    assert held(cache, "a1", "b1", "c1", "d1") == [True, False, True, True]


def test_keeping_a_key_again_replaces_its_value_and_takes_no_more_room() -> None:
    cache = lru(max_entries=3, max_per_owner=2)
    put_all(cache, "a", "a1", "a2")
    put_all(cache, "b", "b1")
    cache.put("a1", "new", owner="a")
    assert cache.get("a1") == "new"
    assert held(cache, "a1", "a2", "b1") == [True, True, True]


def test_a_discarded_entry_frees_its_owners_room() -> None:
    cache = lru(max_per_owner=2)
    put_all(cache, "a", "a1", "a2")
    cache.discard("a1")
    cache.discard("a1")  # twice: nothing more happens
    put_all(cache, "a", "a3")  # the room a1 left: a2 stays
    assert held(cache, "a1", "a2", "a3") == [False, True, True]
    cache.discard("a2")
    cache.discard("a3")
    put_all(cache, "a", "a4", "a5")  # an owner without entries starts afresh
    assert held(cache, "a4", "a5") == [True, True]


def test_cleared_it_holds_nothing_and_each_owner_has_its_whole_share_again() -> None:
    cache = lru(max_entries=4, max_per_owner=2)
    put_all(cache, "a", "a1", "a2")
    put_all(cache, "b", "b1")
    cache.clear()
    assert len(cache) == 0
    put_all(cache, "a", "a3", "a4")
    put_all(cache, "b", "b2", "b3")
    assert held(cache, "a3", "a4", "b2", "b3") == [True] * 4
    put_all(cache, "a", "a5")  # and no more than its share
    assert held(cache, "a3", "a4", "a5", "b2", "b3") == [False, True, True, True, True]


def test_owners_whose_entries_are_gone_take_no_memory() -> None:
    """The owners' number is bounded by the entries', not by the owners ever seen."""
    cache = lru(max_entries=10, max_per_owner=2)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(20_000):
            put_all(cache, f"owner {n}", f"key {n}")
            if n % 2 == 0:
                cache.discard(f"key {n}")
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(cache) == 10
    assert grown < 100_000  # an empty order left per owner would be some 2 MB


def test_bounds_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        lru(max_entries=0)
    with pytest.raises(ValueError, match="at least 1"):
        lru(max_per_owner=0)


_OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["put", "get", "discard"]),
        st.sampled_from("abcd"),  # the owner
        st.integers(min_value=0, max_value=7),  # its key
    ),
    max_size=200,
)


@given(operations=_OPERATIONS)
def test_whatever_owners_do_both_bounds_hold_and_a_put_costs_others_at_most_one(
    operations: list[tuple[str, str, int]],
) -> None:
    cache = lru(max_entries=6, max_per_owner=3)
    owners: dict[str, str] = {}  # what is held, and whose
    for operation, owner, number in operations:
        key = f"{owner}{number}"
        if operation == "put":
            cache.put(key, key, owner=owner)
        elif operation == "get":
            assert cache.get(key) == (key if key in owners else None)
        else:
            cache.discard(key)
        gone = {k for k in owners if k not in cache}
        owners = {k: o for k, o in owners.items() if k not in gone}
        if operation == "put":
            assert cache.get(key) == key
            assert len(gone - {key}) <= 1  # at most one entry made room for it
            mine = sum(1 for o in owners.values() if o == owner) - (key in owners)
            if mine >= 3:  # it was at its share: it lost one of its own
                assert all(k.startswith(owner) for k in gone)
            owners[key] = owner
        else:
            assert not gone - {key}  # neither a get nor a discard drops anything else
        assert len(cache) == len(owners) <= 6
        assert all(sum(1 for o in owners.values() if o == x) <= 3 for x in "abcd")
