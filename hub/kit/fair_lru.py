"""A least recently used cache in which each owner has a share (decisions 0045, 0046).

In a plain LRU cache whoever puts the most entries pushes everyone else's out. Here
each entry has an owner (the hub's caches use the OAuth client it was kept for), and
an owner at its share pushes out its own least recently used entry, not someone
else's. The bound over all entries, the least recently used first, bounds memory.
"""

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_Order = OrderedDict[K, None]


class FairLru(Generic[K, V]):
    """At most ``max_entries`` entries in all, and at most ``max_per_owner`` of one owner.

    :meth:`put` for an owner at its share drops that owner's least recently used entry;
    for an owner below it, in a full cache, the least recently used entry of all. A
    :meth:`get` that finds its key makes the entry the most recently used, for its owner
    and for all. Every operation is O(1), and a hit allocates nothing. There is no lock:
    one event loop (or one thread) uses it. Values are never None (None means none kept).

    Example::

        lru: FairLru[str, int] = FairLru(max_entries=2, max_per_owner=2)
        lru.put("a1", 1, owner="a")
        lru.put("a2", 2, owner="a")
        lru.put("a3", 3, owner="a")  # "a" at its share: its own a1 goes
        lru.put("b1", 4, owner="b")  # full, "b" below its share: the oldest, a2, goes
        assert lru.get("a1") is None and lru.get("a3") == 3 and len(lru) == 2
    """

    __slots__ = ("_by_owner", "_entries", "_max", "_max_per_owner")

    def __init__(self, *, max_entries: int, max_per_owner: int) -> None:
        if max_entries < 1 or max_per_owner < 1:
            raise ValueError("both bounds must be at least 1")
        self._max = max_entries
        self._max_per_owner = max_per_owner
        # Both in least recently used order. An entry holds its owner's order, so that a
        # hit reorders both without looking the owner up. An owner's order is deleted
        # with its last entry: there are never more orders than entries.
        self._entries: OrderedDict[K, tuple[V, Hashable, _Order[K]]] = OrderedDict()
        self._by_owner: dict[Hashable, _Order[K]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: K) -> V | None:
        """The value kept for ``key``, now the most recently used; None if none is."""
        kept = self._entries.get(key)
        if kept is None:
            return None
        self._entries.move_to_end(key)
        kept[2].move_to_end(key)
        return kept[0]

    def put(self, key: K, value: V, *, owner: Hashable) -> None:
        """Keep ``value`` for ``key`` (in place of any), the most recent of ``owner``'s."""
        if key in self._entries:
            self.discard(key)
        own = self._by_owner.get(owner)
        if own is not None and len(own) >= self._max_per_owner:
            self.discard(next(iter(own)))
        elif len(self._entries) >= self._max:
            self.discard(next(iter(self._entries)))
        own = self._by_owner.get(owner)  # the drop may have deleted it
        if own is None:
            own = self._by_owner[owner] = OrderedDict()
        own[key] = None
        self._entries[key] = (value, owner, own)

    def discard(self, key: K) -> None:
        """Drop the entry for ``key``, if there is one."""
        kept = self._entries.pop(key, None)
        if kept is not None:
            _, owner, own = kept
            del own[key]
            if not own:
                del self._by_owner[owner]

    def clear(self) -> None:
        self._entries.clear()
        self._by_owner.clear()
