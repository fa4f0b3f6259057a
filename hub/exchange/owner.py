"""Calling an owner's adapter over HTTPS (the hub's only outbound call on the hot path)."""

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
from onceonly.hub.kit.deadline import post_within
from onceonly.hub.kit.untrusted_json import JsonTooDeep, UnsafeJson, load_json

log = logging.getLogger("onceonly.exchange")

MAX_ANSWER_BYTES = 1024 * 1024
# A record of a registered item, wrapped once; deeper answers are refused as invalid
# (onceonly.hub.kit.jsonbody), never parsed into a RecursionError.
MAX_ANSWER_DEPTH = 64


@dataclass(frozen=True)
class OwnerCall:
    adapter_url: str
    item: str
    token: str
    request_id: str
    body: dict[str, Any]


async def fetch_record(
    client: httpx.AsyncClient, call: OwnerCall, *, timeout: float
) -> dict[str, Any]:
    """POST the query to the owner; the record, or the error the consumer should see.

    ``timeout`` is the whole call's deadline, reading the answer included."""
    url = f"{call.adapter_url.rstrip('/')}/v1/items/{call.item}/records/query"
    headers = {"Authorization": f"Bearer {call.token}", "X-Request-Id": call.request_id}
    try:
        response = await post_within(client, url, seconds=timeout, json=call.body, headers=headers)
    except httpx.TimeoutException:
        raise OwnerTimeout(f"the owner's adapter did not answer within {timeout:g} s") from None
    except httpx.HTTPError as error:
        log.warning("owner adapter unreachable: %s", type(error).__name__)
        raise OwnerUnavailable("the owner's adapter cannot be reached") from None
    return _read_answer(response, item=call.item)


def _read_answer(response: httpx.Response, *, item: str) -> dict[str, Any]:
    if response.status_code == 404:
        raise RecordNotFound("the owner has no such record")
    if response.status_code == 502:  # the adapter found its own source's record invalid
        raise OwnerInvalidResponse("the owner's adapter found its record invalid for the schema")
    if response.status_code != 200:
        log.warning("owner adapter answered HTTP %d", response.status_code)
        raise OwnerUnavailable(f"the owner's adapter answered HTTP {response.status_code}")
    if len(response.content) > MAX_ANSWER_BYTES:
        raise OwnerInvalidResponse("the owner's answer is larger than allowed")
    try:
        answer = load_json(response.content, max_depth=MAX_ANSWER_DEPTH)
    except JsonTooDeep as error:
        raise OwnerInvalidResponse(f"the owner's answer is {error}") from None
    except UnsafeJson:
        raise OwnerInvalidResponse("the owner's answer is not JSON") from None
    record = answer.get("record") if isinstance(answer, dict) else None
    if not isinstance(record, dict) or answer.get("item") != item:
        raise OwnerInvalidResponse("the owner's answer has no record of this item")
    return record
