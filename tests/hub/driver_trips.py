"""What a test asks aiosqlite's threads to do: the name of each function a connection's
thread is given, in order (each is a trip there and back, and a GIL hand-off)."""

import aiosqlite
import pytest


def count_trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, for the test: the functions each connection's thread is asked to run."""
    trips: list[str] = []
    run = aiosqlite.Connection._execute

    async def counted(
        self: aiosqlite.Connection, fn: object, *args: object, **kwargs: object
    ) -> object:
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await run(self, fn, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return trips
