"""Outbound HTTP under a total deadline.

httpx's ``timeout`` bounds each step (connect, each write, each read), not the
whole exchange: a server that sends its headers and then one byte a second never
trips it, and the caller waits as long as the server likes. :func:`post_within`
bounds connecting, sending, waiting and reading the whole body together.

It is how the hub calls departments' adapters (record queries through httpx, event
deliveries): each request is marked as an adapter call, so the hub's transport judges
the address a new connection reaches before sending on it (kit.keepalive; decision 0071).
"""

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx

from onceonly.hub.kit.keepalive import ADAPTER_CALL


async def post_within(
    client: httpx.AsyncClient,
    url: str,
    *,
    seconds: float,
    json: Any,
    headers: Mapping[str, str],
) -> httpx.Response:
    """POST ``json`` to ``url``, a department's adapter, and read the whole answer within
    ``seconds`` in all. A connection the transport's peer rule refuses (the adapter's
    name reached this machine or its link) fails as :class:`httpx.ConnectError` does.

    Raise :class:`httpx.TimeoutException` when the deadline passes (the request is
    cancelled and its connection dropped), and any other :class:`httpx.HTTPError`
    as httpx does.
    """
    try:
        async with asyncio.timeout(seconds):
            return await client.post(
                url,
                json=json,
                headers=headers,
                timeout=seconds,
                extensions={ADAPTER_CALL: True},
            )
    except TimeoutError:
        raise httpx.TimeoutException(f"no whole answer within {seconds:g} s") from None
