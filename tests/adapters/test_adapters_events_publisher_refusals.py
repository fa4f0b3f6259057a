"""Which refusals make the change publisher drop a change: only the hub's own problem
answer to the publish request that refuses that change for good (not the owner, an
unknown, retired or unshared item, a subject the hub refuses, an idempotency key of
another event). A refusal of the token request (a DPoP proof off the hub's clock, a
refused client), a proxy's page, a ``401`` or a failing hub keeps the change in the
outbox (DESIGN.md: nothing acknowledged is lost; decision 0062).

On the wire: an ``httpx.MockTransport`` that answers as the hub does, discovery and
token first, then the publish request, one answer scripted per test."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from joserfc.jwk import ECKey

from onceonly.adapters import AsyncHubClient, RecordStore
from onceonly.adapters._events import ChangePublisher

from tests.adapters.adapter_testing import CLIENT_ID, ITEM, RECORD, SUBJECT
from tests.adapters.test_adapters_events_publisher import EVENTS_LOGGER, lines

HUB = "https://hub.example"
TOKEN = "/oauth/token"
EVENTS = f"/v1/items/{ITEM}/events"


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any] | str
    hubs: bool = True  # the hub's own answer (its X-Request-Id), not a proxy's page

    def response(self) -> httpx.Response:
        headers = {"X-Request-Id": "req-1"} if self.hubs else {}
        if isinstance(self.body, str):
            headers["Content-Type"] = "text/html"
            return httpx.Response(self.status, text=self.body, headers=headers)
        headers["Content-Type"] = "application/problem+json"
        return httpx.Response(self.status, json=self.body, headers=headers)


def problem(status: int, slug: str, **extra: str) -> Reply:
    body = {"type": f"urn:onceonly:problem:{slug}", "title": slug, "status": status}
    return Reply(status, {**body, "detail": "refused", **extra})


PROXY_404 = Reply(404, "<html><body>404 Not Found</body></html>", hubs=False)
ACCEPTED = Reply(202, "")


@dataclass
class Hub:
    """Answers discovery, then the token request and the publish as scripted."""

    token: Reply | None = None  # None: a token
    publish: Reply | None = None  # None: accepted
    everything: Reply | None = None  # a proxy that answers every request itself
    paths: list[str] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.paths.append(path)
        if self.everything is not None:
            return self.everything.response()
        if path == "/.well-known/oauth-authorization-server":
            return httpx.Response(200, json={"issuer": HUB, "token_endpoint": HUB + TOKEN})
        if path == TOKEN:
            if self.token is not None:
                return self.token.response()
            token = {"access_token": "t", "token_type": "DPoP", "expires_in": 300}
            return httpx.Response(200, json=token)
        if self.publish is not None:
            return self.publish.response()
        return httpx.Response(202, json={"event_id": "e1", "subscribers": 0})


def hub_client(hub: Hub) -> AsyncHubClient:
    """The adapter's client as it publishes (no repeats of its own), on ``hub``."""
    key = ECKey.generate_key("P-256", auto_kid=True)
    transport = httpx.MockTransport(hub)
    return AsyncHubClient(HUB, client_id=CLIENT_ID, key=key, retries=0, transport=transport)


def outbox_of_one(path: Path) -> RecordStore:
    """The outbox at ``path``, with one change more."""
    store = RecordStore(path)
    store.put(ITEM, SUBJECT, dict(RECORD))
    return store


def publish_once(hub: Hub, outbox: Path) -> tuple[int, RecordStore]:
    """One round of a publisher over ``outbox`` with one change more: how many the hub
    accepted, and the outbox."""
    store = outbox_of_one(outbox)

    async def once() -> int:
        async with hub_client(hub) as client:
            return await ChangePublisher(store, client).publish_pending()

    return asyncio.run(once()), store


@pytest.mark.parametrize(
    "answer",
    [
        problem(403, "insufficient-scope"),  # its token has no publish scope: not the owner
        problem(403, "not-owner"),
        problem(404, "unknown-item"),
        problem(409, "item-not-shared"),
        problem(410, "item-retired"),
        problem(400, "invalid-request"),  # the subject: padded, not NFC (protocol.md §3)
        problem(422, "idempotency-key-reused"),
    ],
    ids=lambda answer: f"{answer.status}",
)
def test_a_change_the_hub_refuses_for_good_is_dropped_with_an_error(
    answer: Reply, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=EVENTS_LOGGER):
        accepted, store = publish_once(Hub(publish=answer), tmp_path / "outbox.db")

    assert (accepted, store.pending_changes()) == (0, [])
    store.close()
    (dropped,) = lines(caplog, logging.ERROR)
    slug = str(answer.body["type"]).removeprefix("urn:onceonly:problem:")  # type: ignore[index]
    assert dropped == (
        f"change dropped: the hub refused it for good: status {answer.status}, problem type {slug}"
    )
    assert SUBJECT not in caplog.text


@pytest.mark.parametrize(
    ("answer", "asked"),
    [
        # the token may predate the item: one new token, one more publish (decision 0065)
        (problem(403, "insufficient-scope"), [TOKEN, EVENTS, TOKEN, EVENTS]),
        (problem(403, "not-owner"), [TOKEN, EVENTS]),
        (problem(404, "unknown-item"), [TOKEN, EVENTS]),
    ],
    ids=["insufficient-scope", "not-owner", "unknown-item"],
)
def test_only_a_refused_scope_is_asked_again_with_a_new_token(
    answer: Reply, asked: list[str], tmp_path: Path
) -> None:
    hub = Hub(publish=answer)
    accepted, store = publish_once(hub, tmp_path / "outbox.db")

    assert (accepted, store.pending_changes()) == (0, [])
    store.close()
    assert hub.paths[1:] == asked  # after discovery


@pytest.mark.parametrize(
    "hub",
    [
        # the host's clock 20 s ahead of the hub's: its DPoP proof is refused (RFC 9449 §5)
        Hub(token=problem(400, "oauth-invalid-dpop-proof", error="invalid_dpop_proof")),
        Hub(token=problem(400, "oauth-invalid-request", error="invalid_request")),
        Hub(token=problem(401, "oauth-invalid-client", error="invalid_client")),
        Hub(everything=PROXY_404),  # an ingress with no route during the hub's deploy
        Hub(publish=PROXY_404),  # a hub_url whose path a proxy does not route
        Hub(publish=Reply(400, "<html>Bad Request</html>", hubs=False)),
        Hub(publish=Reply(403, "<html>Forbidden</html>", hubs=False)),  # a WAF
        Hub(publish=problem(404, "not-found")),  # the hub has no such route
        Hub(publish=problem(401, "invalid-dpop-proof")),
        Hub(publish=problem(503, "database-unavailable")),
        Hub(publish=problem(500, "internal-error")),
    ],
    ids=[
        "token-dpop-proof",
        "token-invalid-request",
        "token-invalid-client",
        "proxy-404-everything",
        "proxy-404-publish",
        "proxy-400",
        "proxy-403",
        "hub-404-route",
        "publish-401",
        "publish-503",
        "publish-500",
    ],
)
def test_any_other_failure_keeps_the_change_for_the_next_round(hub: Hub, tmp_path: Path) -> None:
    accepted, store = publish_once(hub, tmp_path / "outbox.db")

    assert accepted == 0
    assert len(store.pending_changes()) == 1
    store.close()


def test_a_change_kept_after_a_skewed_clock_is_published_once_the_clock_is_right(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The review's case: the token endpoint refused the proof; then NTP set the clock."""
    skewed = Hub(token=problem(400, "oauth-invalid-dpop-proof", error="invalid_dpop_proof"))
    outbox = tmp_path / "outbox.db"
    with caplog.at_level(logging.INFO, logger=EVENTS_LOGGER):
        publish_once(skewed, outbox)[1].close()
        accepted, store = publish_once(Hub(), outbox)

    assert (accepted, store.pending_changes()) == (2, [])  # the kept change, and another
    store.close()
    assert "change dropped" not in caplog.text


def test_a_proof_refused_for_the_clock_is_an_error_that_says_so_and_backs_off_long(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A skewed clock lasts until an operator mends it (the caps of the waits:
    ``test_a_refusal_that_lasts_waits_longer_than_a_hub_that_is_away``)."""
    hub = Hub(token=problem(400, "oauth-invalid-dpop-proof", error="invalid_dpop_proof"))
    store = outbox_of_one(tmp_path / "outbox.db")

    async def scenario() -> None:
        async with hub_client(hub) as client:
            publisher = ChangePublisher(
                store, client, interval=0.01, max_wait=0.2, jitter=lambda: 1.0
            )
            async with anyio.create_task_group() as group:
                group.start_soon(publisher.run)
                with anyio.fail_after(5.0):
                    while hub.paths.count(TOKEN) < 6:
                        await anyio.sleep(0.01)
                group.cancel_scope.cancel()

    with caplog.at_level(logging.DEBUG, logger=EVENTS_LOGGER):
        asyncio.run(scenario())

    assert len(store.pending_changes()) == 1
    store.close()
    (line,) = lines(caplog, logging.ERROR)
    assert line.startswith(
        "publishing changes failed: InvalidRequest, status 400,"
        " problem type oauth-invalid-dpop-proof (the hub refused this adapter's DPoP proof:"
        " the adapter's clock may be off"
    )
    assert line.endswith("at least every 0.2 s, until it works")
    assert lines(caplog, logging.WARNING) == []
