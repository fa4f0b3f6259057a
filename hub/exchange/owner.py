"""Calling an owner's adapter over HTTPS (the hub's only outbound call on the hot path)."""

import asyncio
import functools
import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from onceonly.hub.exchange.exceptions import (
    OwnerInvalidResponse,
    OwnerTimeout,
    OwnerUnavailable,
    RecordNotFound,
)
from onceonly.hub.kit.base_urls import join_path
from onceonly.hub.kit.deadline import post_within
from onceonly.hub.kit.http1 import Answer, Http1Pool
from onceonly.hub.kit.keepalive import lean_posts
from onceonly.hub.kit.untrusted_json import JsonTooDeep, UnsafeJson, load_json

log = logging.getLogger("onceonly.exchange")

MAX_ANSWER_BYTES = 1024 * 1024
# A record of a registered item, wrapped once; deeper answers are refused as invalid
# (onceonly.hub.kit.jsonbody), never parsed into a RecursionError.
MAX_ANSWER_DEPTH = 64
# The bytes of httpx's json= (json.dumps with these options), one encoder for every call.
_BODY_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


@dataclass(frozen=True)
class OwnerCall:
    adapter_url: str
    item: str
    token: str
    request_id: str
    body: dict[str, Any]


@functools.lru_cache(maxsize=1024)
def _record_url(adapter_url: str, item: str) -> str:
    """The record query's URL, joined under the adapter URL's own path as the deliverer
    joins ``/v1/events`` (kit.base_urls.join_path; the caller has judged the base)."""
    return join_path(adapter_url, f"/v1/items/{item}/records/query")


async def fetch_record(
    client: httpx.AsyncClient, call: OwnerCall, *, timeout: float
) -> dict[str, Any]:
    """POST the query to the owner; the record, or the error the consumer should see.

    ``timeout`` is the whole call's deadline, reading the answer included. Through the
    hub's own transport the call goes below httpx (onceonly.hub.kit.http1); through any
    other (a proxy, a test's transport) as httpx sends it. A connection that reached an
    address a production hub does not talk to (its own machine or link, through the
    adapter's name: decision 0071) is closed before any byte and fails as an owner that
    cannot be reached (logged as ``AdapterAddressRefused``)."""
    try:  # the caller judged the base (call_problem); a URL httpx refuses is no owner's
        url = _record_url(call.adapter_url, call.item)
        posts = lean_posts(client, url)
    except (ValueError, httpx.InvalidURL):
        log.warning("owner adapter URL cannot be called: refused as no base URL")
        raise OwnerUnavailable("the owner department's adapter URL cannot be called") from None
    headers = {"Authorization": f"Bearer {call.token}", "X-Request-Id": call.request_id}
    try:
        if posts is None:
            response = await post_within(
                client, url, seconds=timeout, json=call.body, headers=headers
            )
            answer = Answer(
                status=response.status_code,
                body=response.content,
                oversized=len(response.content) > MAX_ANSWER_BYTES,
            )
        else:
            answer = await _post(posts, url, headers=headers, body=call.body, timeout=timeout)
    except httpx.TimeoutException:
        raise OwnerTimeout(f"the owner's adapter did not answer within {timeout:g} s") from None
    except (httpx.HTTPError, httpx.InvalidURL) as error:  # InvalidURL is no HTTPError
        log.warning("owner adapter unreachable: %s", type(error).__name__)
        raise OwnerUnavailable("the owner's adapter cannot be reached") from None
    return _read_answer(answer, item=call.item)


async def _post(
    posts: Http1Pool,
    url: str,
    *,
    headers: dict[str, str],
    body: dict[str, Any],
    timeout: float,
) -> Answer:
    """As :func:`~onceonly.hub.kit.deadline.post_within` does through httpx: the same
    JSON bytes (httpx's ``json=``), the same deadline on the whole call."""
    content = _BODY_JSON(body)
    fields = [*headers.items(), ("Content-Type", "application/json")]
    try:
        async with asyncio.timeout(timeout):
            return await posts.post(
                url, headers=fields, body=content.encode(), limit=MAX_ANSWER_BYTES
            )
    except TimeoutError:
        raise httpx.TimeoutException(f"no whole answer within {timeout:g} s") from None


def _read_answer(answer: Answer, *, item: str) -> dict[str, Any]:
    status = answer.status
    if status == 404:
        raise RecordNotFound("the owner has no such record")
    if status == 502:  # the adapter found its own source's record invalid
        raise OwnerInvalidResponse("the owner's adapter found its record invalid for the schema")
    if status != 200:
        log.warning("owner adapter answered HTTP %d", status)
        raise OwnerUnavailable(f"the owner's adapter answered HTTP {status}")
    if answer.oversized:
        raise OwnerInvalidResponse("the owner's answer is larger than allowed")
    try:
        parsed = load_json(answer.body, max_depth=MAX_ANSWER_DEPTH)
    except JsonTooDeep as error:
        raise OwnerInvalidResponse(f"the owner's answer is {error}") from None
    except UnsafeJson:
        raise OwnerInvalidResponse("the owner's answer is not JSON") from None
    record = parsed.get("record") if isinstance(parsed, dict) else None
    if not isinstance(record, dict) or parsed.get("item") != item:
        raise OwnerInvalidResponse("the owner's answer has no record of this item")
    return record
