"""Receiving change events (``POST /v1/events``) with the department's ``on_event``
handler, over loopback HTTP: an event is handed to the handler until the handler has
succeeded once (at least once, decision 0062), never to two runs at once; a plain
handler runs in a worker thread, not on the event loop; a body nested too deep is a
400 problem."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from onceonly.adapters import RecordStore, create_provider_app, load_config
from onceonly.adapters._events import DeliveredEvent

from tests.adapters.adapter_testing import ITEM, SUBJECT, HubDouble, serve, write_config
from tests.adapters.test_adapters_provider import assert_problem
from tests.adapters.test_adapters_provider_unexpected import event_token

Handler = Callable[[DeliveredEvent], Any]


def an_event() -> dict[str, str]:
    return {
        "event_id": uuid.uuid4().hex,
        "item": ITEM,
        "kind": "changed",
        "subject": SUBJECT,
        "owner": "tax",
        "published_at": "2026-12-07T07:00:00.000Z",
    }


@contextmanager
def adapter(tmp_path: Path, hub: HubDouble, on_event: Handler) -> Iterator[str]:
    """A consumer's adapter with ``on_event``, served on loopback; its base URL."""
    config = load_config(write_config(tmp_path, hub_url=hub.url))
    with serve(create_provider_app(config, on_event=on_event)) as url:
        yield url


def deliver(url: str, hub: HubDouble, event: dict[str, str], **options: Any) -> httpx.Response:
    """One delivery of ``event`` as the hub makes it: a new event token each time."""
    headers = {"Authorization": f"Bearer {event_token(hub, event)}"}
    return httpx.post(f"{url}/v1/events", json=event, headers=headers, **options)


def received_ids(tmp_path: Path) -> list[str]:
    store_path = load_config(tmp_path / "adapter.toml").store_path
    with RecordStore(store_path) as store:
        return [received.event_id for received in store.received_events()]


class FailsFirst:
    """A handler whose first call fails (the department's database blinked)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, event: DeliveredEvent) -> None:
        self.calls.append(event.event_id)
        if len(self.calls) == 1:
            raise RuntimeError("database blip")


def test_an_event_whose_handler_failed_is_handed_to_it_again_on_the_hubs_retry(
    tmp_path: Path, hub: HubDouble
) -> None:
    handler, event = FailsFirst(), an_event()
    with adapter(tmp_path, hub, handler) as url:
        failed = deliver(url, hub, event)
        assert received_ids(tmp_path) == []  # not handled, so not kept as handled
        retried = deliver(url, hub, event)
        again = deliver(url, hub, event)  # the acknowledgement was lost, say

    assert_problem(failed, 500, "internal-error")  # the hub tries again
    assert retried.json() == {"status": "received"}
    assert again.json() == {"status": "duplicate"}
    assert handler.calls == [event["event_id"]] * 2  # once failed, once handled
    assert received_ids(tmp_path) == [event["event_id"]]


def test_an_event_whose_handler_failed_is_handed_to_it_again_after_a_restart(
    tmp_path: Path, hub: HubDouble
) -> None:
    failing, event = FailsFirst(), an_event()
    with adapter(tmp_path, hub, failing) as url:
        assert deliver(url, hub, event).status_code == 500
    handled: list[str] = []
    with adapter(tmp_path, hub, lambda delivered: handled.append(delivered.event_id)) as url:
        assert deliver(url, hub, event).json() == {"status": "received"}

    assert handled == [event["event_id"]]


class Overlaps:
    """An async handler that takes a while and notes how many of its runs overlap."""

    def __init__(self, *, fail_first: bool) -> None:
        self.calls, self.running, self.most = 0, 0, 0
        self._fail_first = fail_first

    async def __call__(self, event: DeliveredEvent) -> None:
        self.calls += 1
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await anyio.sleep(0.5)
            if self._fail_first and self.calls == 1:
                raise RuntimeError("database blip")
        finally:
            self.running -= 1


def deliver_together(url: str, hub: HubDouble, event: dict[str, str]) -> list[int | str]:
    """Two deliveries of ``event`` at once (the hub's retry after a timeout, while the
    first is still being handled): each one's status, or its answer's status member."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(deliver, url, hub, event, timeout=10)
        time.sleep(0.1)
        second = pool.submit(deliver, url, hub, event, timeout=10)
        answers = [first.result(), second.result()]
    return [a.json()["status"] if a.status_code == 200 else a.status_code for a in answers]


@pytest.mark.parametrize(
    ("fail_first", "answers", "calls"),
    [
        (False, ["received", "duplicate"], 1),  # the second waited, then found it handled
        (True, [500, "received"], 2),  # the second waited, then handed it over again
    ],
)
def test_deliveries_of_one_event_at_once_take_turns_with_the_handler(
    tmp_path: Path, hub: HubDouble, fail_first: bool, answers: list[int | str], calls: int
) -> None:
    handler, event = Overlaps(fail_first=fail_first), an_event()
    with adapter(tmp_path, hub, handler) as url:
        assert deliver_together(url, hub, event) == answers

    assert (handler.calls, handler.most) == (calls, 1)  # never two runs at once
    assert received_ids(tmp_path) == [event["event_id"]]


def test_a_slow_plain_handler_does_not_hold_up_the_adapter(tmp_path: Path, hub: HubDouble) -> None:
    """A sync handler that blocks (it fetches the record again with the sync
    ``HubClient``, say) runs in a worker thread, as a sync Python source does: the
    adapter answers meanwhile."""
    release = threading.Event()

    def handler(event: DeliveredEvent) -> None:
        release.wait(timeout=10)

    with adapter(tmp_path, hub, handler) as url, ThreadPoolExecutor(max_workers=1) as pool:
        delivery = pool.submit(deliver, url, hub, an_event(), timeout=15)
        time.sleep(0.3)  # the handler is running
        try:
            started = time.monotonic()
            health = httpx.get(f"{url}/healthz", timeout=3)
            took = time.monotonic() - started
        finally:
            release.set()
        assert delivery.result().json() == {"status": "received"}

    assert health.status_code == 200
    assert took < 2.0  # held by the handler it would time out (3 s); margin for a busy CI


def test_an_event_body_nested_too_deep_is_refused_with_a_problem(
    tmp_path: Path, hub: HubDouble
) -> None:
    """A valid event token, and a body (under 64 KiB) nested 30,000 levels deep."""
    event = an_event()
    headers = {
        "Authorization": f"Bearer {event_token(hub, event)}",
        "Content-Type": "application/json",
    }
    with adapter(tmp_path, hub, lambda _: None) as url:
        response = httpx.post(
            f"{url}/v1/events", content=b"[" * 30000 + b"]" * 30000, headers=headers
        )

    body = assert_problem(response, 400, "invalid-request")
    assert "nested" in body["detail"]


@pytest.mark.parametrize("claims", [{"exp": 10**400}, {"iat": -(10**400)}, {"exp": 2**53 + 1}])
def test_an_event_token_with_a_time_no_float_holds_is_refused_401(
    tmp_path: Path, hub: HubDouble, claims: dict[str, int]
) -> None:
    """A hub-signed event token whose exp or iat is an integer too large for a float
    (it overflowed to a 500, review 161) is an invalid token, like any malformed claim."""
    event = an_event()
    headers = {"Authorization": f"Bearer {event_token(hub, event, **claims)}"}
    with adapter(tmp_path, hub, lambda _: None) as url:
        response = httpx.post(f"{url}/v1/events", json=event, headers=headers)

    body = assert_problem(response, 401, "invalid-token")
    assert "out of bounds" in body["detail"]
