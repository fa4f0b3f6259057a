"""A guard for the whole suite: no request takes a second connection from a pool it
already holds one of (decision 0056's Later note).

A request that holds a pooled connection while it waits for another from the same pool
starves the pool under load: with as many such requests as the pool has connections,
each holds one and waits for a second that nobody gives back, until the pool's timeout
fails them all (and every other request with them). One request in a test shows the
pattern as well as a hundred: every checkout is noted per asyncio task and pool, and a
second checkout by a task that already holds one of that pool, made while serving a
request (the hub's middleware on its stack), is a violation that fails the test.

Only this process's pools: a hub served in a thread by the tests is covered, one run as
a subprocess is not. Work outside requests (the event deliverer, the group-commit
writers, the roll-up) is not judged here: none of it is waited for by a request while
it holds a connection of the requests' pool."""

import asyncio
import threading
import weakref
from collections import Counter

from sqlalchemy import event
from sqlalchemy.pool import Pool

_KEY = "onceonly_pool_guard"
_lock = threading.Lock()
_held: "weakref.WeakKeyDictionary[asyncio.Task[object], Counter[int]]" = weakref.WeakKeyDictionary()
violations: list[str] = []

# A frame of the hub's request path: the outermost of its middleware.
_REQUEST_FRAME = ("hub/middleware.py", "__call__")


def install() -> None:
    event.listen(Pool, "checkout", _checked_out)
    event.listen(Pool, "checkin", _checked_in)
    # A connection found dead is invalidated and may never come back through checkin:
    # it is no longer held either.
    event.listen(Pool, "invalidate", _invalidated)
    event.listen(Pool, "soft_invalidate", _invalidated)


def _invalidated(dbapi_connection: object, record: object, exception: object) -> None:
    _checked_in(dbapi_connection, record)


def _checked_out(dbapi_connection: object, record: object, proxy: object) -> None:
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no loop in this thread: synchronous code
        return
    pool = getattr(record, "_ConnectionRecord__pool", None)  # SQLAlchemy's own record
    if task is None or pool is None:
        return
    with _lock:
        counts = _held.setdefault(task, Counter())
        already = counts[id(pool)]
        counts[id(pool)] += 1
    record.info[_KEY] = (weakref.ref(task), id(pool))  # type: ignore[attr-defined]
    if already:
        stack = _request_stack()
        if stack is not None:
            violations.append(stack)


def _checked_in(dbapi_connection: object, record: object) -> None:
    noted = record.info.pop(_KEY, None)  # type: ignore[attr-defined]
    if noted is None:
        return
    task_ref, pool = noted
    task = task_ref()
    if task is None:
        return
    with _lock:
        counts = _held.get(task)
        if counts is not None and counts[pool] > 0:
            counts[pool] -= 1


def _request_stack() -> str | None:
    """The hub's frames of the coroutine that checks out (SQLAlchemy runs the checkout
    in a greenlet whose parent holds them), if it serves a request; else None."""
    try:
        import greenlet

        frame = greenlet.getcurrent().parent.gr_frame  # type: ignore[union-attr]
    except (ImportError, AttributeError):
        return None
    frames = []
    serving = False
    while frame is not None:
        name = frame.f_code.co_filename
        if "/hub/" in name and "site-packages" not in name:
            where = name[name.rindex("/hub/") + 1 :]
            frames.append(f"{where}:{frame.f_lineno} {frame.f_code.co_name}")
            serving = serving or (where, frame.f_code.co_name) == _REQUEST_FRAME
        frame = frame.f_back
    return " < ".join(frames) if serving else None
