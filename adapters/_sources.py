"""Where a provider adapter reads records: one-method source connectors."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast, runtime_checkable

import anyio.to_thread

from ._store import RecordStore

__all__ = ["CallableSource", "RecordSource", "StoreSource"]

Record = dict[str, Any]
RecordFunction = Callable[[str, str], Record | Awaitable[Record | None] | None]


@runtime_checkable
class RecordSource(Protocol):
    """The one thing a provider needs from a department system.

    ``fetch`` returns the subject's record of ``item`` as a JSON object, or ``None``
    when there is none. It may raise; the provider then answers 503
    ``source-unavailable`` and logs the exception's type only.

    Example::

        class Registry:
            async def fetch(self, item: str, subject: str) -> dict | None:
                return await legacy.lookup(subject)
    """

    async def fetch(self, item: str, subject: str) -> Record | None: ...


class StoreSource:
    """Reads records from the adapter-local `RecordStore` (in a worker thread).

    Example::

        source = StoreSource(RecordStore(config.store_path))
    """

    def __init__(self, store: RecordStore) -> None:
        self.store = store

    async def fetch(self, item: str, subject: str) -> Record | None:
        return await anyio.to_thread.run_sync(self.store.get, item, subject)


class CallableSource:
    """Wraps a function ``fn(item, subject) -> dict | None``, sync or async.

    A sync function runs in a worker thread, so it may block.

    Example::

        source = CallableSource(lambda item, subject: {"city": "Tartu"})
    """

    def __init__(self, fn: RecordFunction) -> None:
        self._fn = fn

    async def fetch(self, item: str, subject: str) -> Record | None:
        result: Record | Awaitable[Record | None] | None
        if inspect.iscoroutinefunction(self._fn):
            result = self._fn(item, subject)
        else:
            result = await anyio.to_thread.run_sync(lambda: self._fn(item, subject))
        if inspect.isawaitable(result):
            result = await result
        return cast("Record | None", result)
