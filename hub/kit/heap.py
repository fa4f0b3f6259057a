"""The serving process's garbage collector, set once the hub is ready (decision 0035).

CPython's cyclic collector walks, at each full collection, every container object
the process holds. In a serving hub most of them are the start-up heap: modules,
SQLAlchemy's and pydantic's structures, the routes, the OpenAPI document, which live
as long as the process and can never be garbage. Walking them stalled every request
in flight: full collections took 30-580 ms each in bench/exchange.py, the latency
the hub added at its p99. :func:`settle_for_serving` collects once, then freezes
what is left (``gc.freeze``: the collector no longer walks it; it is still freed by
reference counting) and makes young collections rarer, so that a request's
short-lived objects mostly die before a collection sees them.

Only the serving process calls it (the ``onceonly serve`` factory, each worker);
tests that run hubs inside their own process leave their collector alone.
"""

import gc

YOUNG_THRESHOLD = 10_000
"""Allocations between two young collections (CPython's default: 700)."""


def settle_for_serving() -> None:
    """Collect, freeze the surviving heap, and raise the young generation's threshold."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
