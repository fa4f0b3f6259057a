"""Outbound HTTP under a total deadline.

httpx's ``timeout`` bounds each step (connect, each write, each read), not the
whole exchange: a server that sends its headers and then one byte a second never
trips it, and the caller waits as long as the server likes. :func:`post_within`
bounds connecting, sending, waiting and reading the whole body together.
:func:`post_for_status` does the same for a call whose answer only counts by its
status (an event delivery): it reads a few KiB of the body (and at most one piece of
the transport's more), never all of it.

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


STATUS_BODY_BYTES = 4096
"""Past how many bytes of an answer's body :func:`post_for_status` stops reading by
default (an acknowledgement's body, ``{"status": "received"}``, and then some); the
piece that passes it may bring up to 64 KiB more. A connection whose answer is longer
is closed, not kept."""


async def post_for_status(
    client: httpx.AsyncClient,
    url: str,
    *,
    seconds: float,
    json: Any,
    headers: Mapping[str, str],
    limit: int = STATUS_BODY_BYTES,
) -> int:
    """POST ``json`` to ``url``, a department's adapter, as :func:`post_within` does (one
    deadline, the peer rule), and return the answer's status. Only the status counts, so
    the body is read as it came (no decompression), piece by piece as the transport reads
    it, until it ends or the pieces read pass ``limit`` bytes. What is read is therefore
    bounded by ``limit`` plus one piece, a read of the transport (at most 64 KiB in
    httpcore; what the operating system has buffered for the socket comes on top), and
    only one piece is held at a time; the rest is never read: the connection is closed,
    not kept (httpcore closes one whose answer was not read to its end). A small answer
    is read whole, so its connection is kept for the next call.

    Raise :class:`httpx.TimeoutException` when the deadline passes, and any other
    :class:`httpx.HTTPError` as httpx does.
    """
    try:
        async with (
            asyncio.timeout(seconds),
            client.stream(
                "POST",
                url,
                json=json,
                headers=headers,
                timeout=seconds,
                extensions={ADAPTER_CALL: True},
            ) as response,
        ):
            read = 0
            async for chunk in response.aiter_raw():  # each one read: at most 64 KiB
                read += len(chunk)
                if read > limit:
                    break
            return response.status_code
    except TimeoutError:
        raise httpx.TimeoutException(f"no answer within {seconds:g} s") from None
