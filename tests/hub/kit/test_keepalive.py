"""The hub's outbound transport (onceonly.hub.kit.keepalive) against a real server on
loopback: connections are kept and reused, one the server closed is never reused,
concurrency is bounded, and failures are httpx's own exceptions."""

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from onceonly.hub.kit.keepalive import KeepAliveTransport

from tests.hub_testing import serve


def peers_app() -> FastAPI:
    """Answers with the client's port (one per connection); ``?close`` ends the
    connection after the answer, ``?sleep`` waits first, and ``/running`` counts how
    many requests were in progress at most."""
    app = FastAPI()
    running = {"now": 0, "most": 0}

    @app.post("/peer")
    async def peer(request: Request, sleep: float = 0.0, close: bool = False) -> Response:
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        await asyncio.sleep(sleep)
        running["now"] -= 1
        assert request.client is not None
        headers = {"connection": "close"} if close else {}
        return Response(str(request.client.port), headers=headers)

    @app.get("/running")
    async def most() -> dict[str, int]:
        return running

    return app


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve(peers_app()) as url:
        yield url


async def _ports(client: httpx.AsyncClient, url: str, count: int, **params: object) -> list[str]:
    return [(await client.post(f"{url}/peer", params=params)).text for _ in range(count)]


def test_keeps_one_connection_for_requests_one_after_another(server: str) -> None:
    async def run() -> list[str]:
        async with httpx.AsyncClient(transport=KeepAliveTransport()) as client:
            return await _ports(client, server, 5)

    assert len(set(asyncio.run(run()))) == 1


def test_never_reuses_a_connection_the_server_closed(server: str) -> None:
    async def run() -> list[str]:
        async with httpx.AsyncClient(transport=KeepAliveTransport()) as client:
            return await _ports(client, server, 3, close=True)

    assert len(set(asyncio.run(run()))) == 3


def test_concurrent_requests_open_at_most_max_connections(server: str) -> None:
    async def run() -> tuple[list[httpx.Response], dict[str, int]]:
        async with httpx.AsyncClient(transport=KeepAliveTransport(max_connections=2)) as client:
            calls = [client.post(f"{server}/peer", params={"sleep": 0.2}) for _ in range(6)]
            answers = await asyncio.gather(*calls)
            return answers, (await client.get(f"{server}/running")).json()

    answers, running = asyncio.run(run())
    assert [answer.status_code for answer in answers] == [200] * 6
    assert len({answer.text for answer in answers}) == 2  # the two connections, reused
    assert running["most"] <= 2


def test_waiting_for_a_free_connection_past_the_pool_timeout_is_a_pool_timeout(
    server: str,
) -> None:
    async def run() -> None:
        transport = KeepAliveTransport(max_connections=1)
        async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5, pool=0.1)) as c:
            slow = asyncio.create_task(c.post(f"{server}/peer", params={"sleep": 0.5}))
            await asyncio.sleep(0.1)
            with pytest.raises(httpx.PoolTimeout):
                await c.post(f"{server}/peer")
            assert (await slow).status_code == 200
            assert (await c.post(f"{server}/peer")).status_code == 200  # the slot came back

    asyncio.run(run())


def test_a_refused_connection_is_httpx_connect_error() -> None:
    async def run() -> None:
        async with httpx.AsyncClient(transport=KeepAliveTransport(max_connections=1)) as client:
            for _ in range(2):  # the failed attempt gave its slot back
                with pytest.raises(httpx.ConnectError):
                    await client.post("http://127.0.0.1:9/peer")

    asyncio.run(run())
