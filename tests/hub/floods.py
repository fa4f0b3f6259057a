"""Many requests at once, and a bystander's request meanwhile: what a test of a pool's
starvation sends (decision 0056)."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

Send = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Flood:
    statuses: dict[int, int]  # how many of the flood's answers had each status
    bystander: int  # the status of someone else's GET /v1/items sent meanwhile
    bystander_waited: float  # seconds


def flood(
    hub_url: str,
    send: Send,
    count: int,
    *,
    bystander: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]] | None = None,
) -> Flood:
    """``send(http, n)`` for n in range(count), all at once; 0.2 s later, a bystander's
    request (``bystander(http)``; by default ``GET /v1/items``); then every answer."""

    async def run() -> Flood:
        limits = httpx.Limits(max_connections=count + 10)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            sent = [asyncio.ensure_future(send(http, n)) for n in range(count)]
            await asyncio.sleep(0.2)
            started = time.monotonic()
            answer = await (bystander(http) if bystander else http.get(f"{hub_url}/v1/items"))
            waited = time.monotonic() - started
            answers = await asyncio.gather(*sent)
        codes = [answer.status_code for answer in answers]
        return Flood({code: codes.count(code) for code in set(codes)}, answer.status_code, waited)

    return asyncio.run(run())
