"""Token buckets by key, in bounded memory (decision 0051).

Each key (a client id, a source address) has a bucket of at most ``capacity`` tokens
that refills at ``per_second``; a key with no bucket has a full one. :meth:`wait` says
how long a request under a key must wait for one token, without making a bucket:
asking about a million made-up keys keeps nothing. :meth:`take` spends a token (and
makes the bucket), :meth:`give_back` returns one.

At most ``max_keys`` buckets are kept. A bucket that has refilled is the same as no
bucket, and only such a bucket goes to make room for a new key: the least recently
used that has refilled, looked for among the least recently used few (those that have
not are moved behind, to be looked at again later). The bound never makes the limit
forget a spent bucket. When no bucket can go, a new key waits (:meth:`wait` says how
long) until one has refilled: the bound can refuse new keys for a while, never hand a
key that spent its tokens a full bucket again. Every operation is O(1). There is no
lock: one event loop (or one thread) uses it. Time is given by the caller (``now``,
seconds on a monotonic clock).
"""

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

# A new key looks at this many of the least recently used buckets for one that has
# refilled (and can go): a bounded cost however full the table is.
_LOOK_AT = 8


class _Bucket:
    __slots__ = ("reported", "tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated
        self.reported: float | None = None  # when a refusal under it was last reported


class TokenBuckets(Generic[K]):
    """A token bucket per key, at most ``max_keys`` of them.

    Example::

        buckets: TokenBuckets[str] = TokenBuckets(capacity=2, per_second=0.5, max_keys=100)
        buckets.take("a", now=0.0)
        buckets.take("a", now=0.0)
        assert buckets.wait("a", now=0.0) == 2.0  # one token back after 2 s
        assert buckets.wait("b", now=0.0) == 0.0  # and "b" is still kept nowhere
    """

    __slots__ = ("_buckets", "_capacity", "_max_keys", "_per_second", "_unkept_reported")

    def __init__(self, *, capacity: float, per_second: float, max_keys: int) -> None:
        if capacity < 1 or per_second <= 0 or max_keys < 1:
            raise ValueError("capacity must be at least 1, per_second above 0, max_keys 1+")
        self._capacity = float(capacity)
        self._per_second = float(per_second)
        self._max_keys = max_keys
        self._buckets: OrderedDict[K, _Bucket] = OrderedDict()
        self._unkept_reported: float | None = None  # a refusal for want of room, reported

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets

    def wait(self, key: K, *, now: float) -> float:
        """Seconds until ``key``'s bucket holds a whole token; 0.0 when it holds one.
        A key with no bucket waits only when there is no room for one: until a bucket
        has refilled (an estimate)."""
        bucket = self._refilled(key, now)
        if bucket is None:
            return self._room(now)
        if bucket.tokens >= 1:
            return 0.0
        return (1 - bucket.tokens) / self._per_second

    def take(self, key: K, *, now: float) -> None:
        """Spend a token of ``key``'s bucket; an empty bucket stays at 0 (no debt). A
        key with no bucket needs room for one: :meth:`wait` said 0.0 for it (at the
        same ``now``, with no call between), else :class:`OverflowError`."""
        bucket = self._refilled(key, now)
        if bucket is None:
            if self._room(now) > 0:
                raise OverflowError("no room for another key: ask wait() first")
            bucket = self._buckets[key] = _Bucket(self._capacity, now)
        bucket.tokens = max(0.0, bucket.tokens - 1)

    def give_back(self, key: K, *, now: float) -> None:
        """Return a token taken from ``key``'s bucket (none above its capacity)."""
        bucket = self._refilled(key, now)
        if bucket is not None:
            bucket.tokens = min(self._capacity, bucket.tokens + 1)

    def report_due(self, key: K, *, now: float, every: float) -> bool:
        """Whether a refusal under ``key`` is the first in ``every`` seconds (and so is
        to be reported: the others are only counted). The keys refused for want of room
        (with no bucket) are reported together: the first of them in ``every``."""
        bucket = self._buckets.get(key)
        last = self._unkept_reported if bucket is None else bucket.reported
        if last is not None and now - last < every:
            return False
        if bucket is None:
            self._unkept_reported = now
        else:
            bucket.reported = now
        return True

    def _refilled(self, key: K, now: float) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        self._buckets.move_to_end(key)
        bucket.tokens = self._tokens_at(bucket, now)
        bucket.updated = now
        return bucket

    def _tokens_at(self, bucket: _Bucket, now: float) -> float:
        elapsed = max(0.0, now - bucket.updated)  # a clock that stepped back refills nothing
        return min(self._capacity, bucket.tokens + elapsed * self._per_second)

    def _room(self, now: float) -> float:
        """0.0 if there is room for a new bucket, making it by letting a refilled one
        go; else the seconds until the soonest of those looked at has refilled."""
        if len(self._buckets) < self._max_keys:
            return 0.0
        soonest = math.inf
        for _ in range(min(_LOOK_AT, len(self._buckets))):
            key, bucket = next(iter(self._buckets.items()))
            missing = self._capacity - self._tokens_at(bucket, now)
            if missing <= 0:
                del self._buckets[key]  # full: it carries nothing
                return 0.0
            self._buckets.move_to_end(key)  # looked at later again, after the others
            soonest = min(soonest, missing / self._per_second)
        return soonest


def source_of(address: str) -> str:
    """The source a budget counts: an IPv4 address, or an IPv6 address's /64 (one host
    commonly holds a whole /64); anything else as it is. An IPv6 /64's /56 and /48 are
    counted too where a budget says so (:func:`ipv6_networks`)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else ip)


# An IPv6 source counts as its /64 (one host commonly holds a whole /64), and its /56
# (a home or small site) and /48 (a site) have budgets of their own, these many times
# a source's: a /48, which a tunnel broker hands out for free, has 16 times the budget
# of one IPv4 address, not 65,536 times (decision 0051). The OAuth endpoints' budgets
# and the sign-in throttle's counts (decision 0063) both use them.
IPV6_NETWORK_SHARES = {56: 4, 48: 16}


def ipv6_networks(source: str) -> list[tuple[int, str]]:
    """The wider networks that have budgets of their own beside ``source``'s, by prefix
    length (their shares: :data:`IPV6_NETWORK_SHARES`): for an IPv6 /64 (as
    ``"2001:db8:1:2::/64"``), its /56 and its /48; for anything else, none."""
    try:
        network = ipaddress.ip_network(source)
    except ValueError:
        return []
    if network.version != 6 or network.prefixlen != 64:
        return []
    return [(prefix, str(network.supernet(new_prefix=prefix))) for prefix in IPV6_NETWORK_SHARES]


def retry_after(wait: float) -> int:
    """A ``Retry-After`` value (RFC 9110 §10.2.3, whole seconds) for a ``wait`` in seconds:
    rounded up, and at least 1, so that a client that obeys it finds a token."""
    return max(1, math.ceil(wait))
