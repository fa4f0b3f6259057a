"""Background workers: one shape, started and stopped one way.

A worker (the audit writer, the single-use register, the checkpointer, the event
deliverer) is started once in the lifespan and stopped once at its end. Its ``stop``
ends what it runs gracefully: it finishes or hands back work under way, and returns
only when nothing of it still runs. :func:`start_all` starts workers on an
``AsyncExitStack`` so that they stop in the reverse order of their start (what
started last, and may still use what started earlier, stops first), each of them
even when another one's stop failed.
"""

from collections.abc import Iterable
from contextlib import AsyncExitStack
from typing import Protocol


class Worker(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


async def start_all(stack: AsyncExitStack, workers: Iterable[Worker]) -> None:
    """Start ``workers`` in order; ``stack`` stops each started one on exit, in reverse."""
    for worker in workers:
        await worker.start()
        stack.push_async_callback(worker.stop)
