"""Where a provider adapter reads records: the `RecordSource` interface, its errors,
and the sources that need no connector of their own (store, Python callable).

The SQL and REST connectors live in ``_sql`` and ``_rest``. Each kind of source also
has a settings model (``StoreItem``, ``PythonItem``, ``SqlItem``, ``RestItem``) whose
``open()`` makes the source; ``_config`` puts them together. Errors::

    UpstreamError
    └── SourceError              a source failed; the provider renders it as is
        ├── SourceUnavailable    503 source-unavailable: down, timed out, refused
        │   └── SourceMisconfigured  it answers, but refuses what the settings ask
        └── InvalidSourceRecord  502 source-invalid-record: answered, but not one record
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Literal, Protocol, cast, runtime_checkable

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field

from ._batches import ThreadBatches
from ._errors import ConfigError, UpstreamError
from ._store import RecordStore

__all__ = [
    "CallableSource",
    "InvalidSourceRecord",
    "ItemBase",
    "ProbedSource",
    "PythonItem",
    "RecordSource",
    "SourceError",
    "SourceMisconfigured",
    "SourceUnavailable",
    "StoreItem",
    "StoreSource",
    "close_sources",
]

Record = dict[str, Any]
RecordFunction = Callable[[str, str], Record | Awaitable[Record | None] | None]


class SourceError(UpstreamError):
    """A record source failed. ``detail`` never holds the subject."""


class SourceUnavailable(SourceError):
    """The source is down, timed out, or refused the adapter (HTTP 503)."""

    default_status = 503
    default_problem_type = "source-unavailable"
    title = "Record source unavailable"


class SourceMisconfigured(SourceUnavailable):
    """The source answers, but refuses what the item's settings ask of it (an SQL query
    the database cannot run): a mistake in the configuration, which stops
    ``onceonly adapter serve`` at start-up. Answered 503 like any unavailable source."""


class InvalidSourceRecord(SourceError):
    """The source answered something that is not one record (HTTP 502)."""

    default_status = 502
    default_problem_type = "source-invalid-record"
    title = "Invalid record from source"


@runtime_checkable
class RecordSource(Protocol):
    """The one thing a provider needs from a department system.

    ``fetch`` returns the subject's record of ``item`` as a JSON object, or ``None``
    when there is none. A `SourceError` is answered as it says (503 or 502); any
    other exception as 503 ``source-unavailable``, and only its type is logged.

    Example::

        class Registry:
            async def fetch(self, item: str, subject: str) -> dict | None:
                return await legacy.lookup(subject)
    """

    async def fetch(self, item: str, subject: str) -> Record | None: ...


@runtime_checkable
class ProbedSource(Protocol):
    """A source that ``onceonly adapter check`` can try without a real subject."""

    async def probe(self, item: str) -> str:
        """A short note on what answered; raises `SourceError` when it does not."""
        ...


class StoreSource:
    """Reads records from the adapter-local `RecordStore`, in a worker thread of its own
    that reads every record asked for meanwhile at once (`ThreadBatches`).

    Example::

        source = StoreSource(RecordStore(config.store_path))
    """

    def __init__(self, store: RecordStore) -> None:
        self.store = store
        self._reads: ThreadBatches[tuple[str, str], Record | None] = ThreadBatches(
            store.get_many, name="store-reads"
        )

    async def fetch(self, item: str, subject: str) -> Record | None:
        return await self._reads((item, subject))

    async def aclose(self) -> None:
        self._reads.close()

    async def probe(self, item: str) -> str:
        count = await anyio.to_thread.run_sync(self.store.count, item)
        return f"{count} record(s) of {item} in the store"


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


async def close_sources(sources: Iterable[object]) -> None:
    """Close every source that holds connections (``aclose()``), each once."""
    for source in {id(source): source for source in sources}.values():
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


class ItemBase(BaseModel):
    """Settings every ``[items."<id>"]`` table may have, whatever its source."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_file: Path | None = None
    """A local copy of the item's JSON Schema, compared with the hub's by ``check``."""


class StoreItem(ItemBase):
    """``source = "store"`` (the default): the adapter-local record store."""

    source: Literal["store"] = "store"

    def open(self, *, store: RecordStore) -> RecordSource:
        return StoreSource(store)


class PythonItem(ItemBase):
    """``source = "python"``: ``callable = "package.module:function"``, called as
    ``function(item, subject)`` and returning a dict or ``None`` (sync or async)."""

    source: Literal["python"]
    callable: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

    def open(self, *, store: RecordStore) -> RecordSource:
        return CallableSource(import_callable(self.callable))


def import_callable(reference: str) -> RecordFunction:
    """The object that ``"package.module:attribute"`` names.

    :raises ConfigError: the module cannot be imported, or the name is not callable.
    """
    module_name, _, attribute = reference.partition(":")
    try:
        found: object = importlib.import_module(module_name)
        for name in attribute.split("."):
            found = getattr(found, name)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"callable: cannot import {reference!r}: {error}") from error
    if not callable(found):
        raise ConfigError(f"callable: {reference!r} is not callable")
    return cast(RecordFunction, found)


def subject_free(text: str, subject: str) -> str:
    """``text`` with any occurrence of ``subject`` blanked out, for error details."""
    return re.sub(re.escape(subject), "<subject>", text) if subject else text
