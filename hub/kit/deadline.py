"""Outbound HTTP under a total deadline.

httpx's ``timeout`` bounds each step (connect, each write, each read), not the
whole exchange: a server that sends its headers and then one byte a second never
trips it, and the caller waits as long as the server likes. :func:`post_within`
bounds connecting, sending, waiting and reading the whole body together.
"""

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx


async def post_within(
    client: httpx.AsyncClient,
    url: str,
    *,
    seconds: float,
    json: Any,
    headers: Mapping[str, str],
) -> httpx.Response:
    """POST ``json`` to ``url`` and read the whole answer within ``seconds`` in all.

    Raise :class:`httpx.TimeoutException` when the deadline passes (the request is
    cancelled and its connection dropped), and any other :class:`httpx.HTTPError`
    as httpx does.
    """
    try:
        async with asyncio.timeout(seconds):
            return await client.post(url, json=json, headers=headers, timeout=seconds)
    except TimeoutError:
        raise httpx.TimeoutException(f"no whole answer within {seconds:g} s") from None
