"""The moment an event was published is signed: the hub's event token carries the body's
``published_at``, and the adapter refuses a body whose ``published_at`` differs from it
(receivers order a subject's events by it, docs/events.md). A token without the claim,
as a hub older than it signs, is still taken. Over loopback HTTP, with the hub's own
token minter."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from onceonly.adapters import create_provider_app, load_config
from onceonly.adapters._events import DeliveredEvent
from onceonly.hub.events.tokens import mint_event_token

from tests.adapters.adapter_testing import ITEM, OWNER, SUBJECT, HubDouble, serve, write_config
from tests.adapters.test_adapters_provider import assert_problem
from tests.adapters.test_adapters_provider_unexpected import event_token

PUBLISHED = "2026-12-07T07:00:00.000Z"


def _event(published_at: str) -> dict[str, str]:
    return {
        "event_id": uuid.uuid4().hex,
        "item": ITEM,
        "kind": "changed",
        "subject": SUBJECT,
        "owner": "tax",
        "published_at": published_at,
    }


def _hubs_token(hub: HubDouble, event: dict[str, str], *, published_at: str) -> str:
    """The token the hub signs for ``event`` (to this adapter's department), claiming
    ``published_at``."""
    return mint_event_token(
        key=hub.keys[0],
        issuer=hub.url,
        subscriber=OWNER,  # the adapter under test is the department the double names
        owner=event["owner"],
        event_id=event["event_id"],
        item=event["item"],
        kind=event["kind"],
        subject=event["subject"],
        published_at=published_at,
        now=int(time.time()),
        lifetime=60,
    )


@pytest.mark.parametrize(
    ("signed", "sent", "taken"),
    [
        (PUBLISHED, PUBLISHED, True),
        (PUBLISHED, "2099-12-31T23:59:59.999Z", False),  # moved later in transit
        (PUBLISHED, "2026-12-07T07:00:00.000+00:00", False),  # the same moment, other text
    ],
)
def test_a_body_whose_published_at_is_not_the_signed_one_is_refused(
    tmp_path: Path, hub: HubDouble, signed: str, sent: str, taken: bool
) -> None:
    handled: list[DeliveredEvent] = []
    event = _event(sent)
    token = _hubs_token(hub, event, published_at=signed)
    config = load_config(write_config(tmp_path, hub_url=hub.url))
    with serve(create_provider_app(config, on_event=handled.append)) as url:
        answer = httpx.post(
            f"{url}/v1/events", json=event, headers={"Authorization": f"Bearer {token}"}
        )
    if taken:
        assert answer.json() == {"status": "received"}
        assert [e.published_at for e in handled] == [signed]
    else:
        assert_problem(answer, 401, "invalid-token")
        assert "published_at" in answer.json()["detail"]
        assert handled == []


def test_an_older_hubs_token_without_published_at_is_still_taken(
    tmp_path: Path, hub: HubDouble
) -> None:
    handled: list[DeliveredEvent] = []
    event = _event(PUBLISHED)
    token = event_token(hub, event)  # the claims of a hub before published_at was signed
    config = load_config(write_config(tmp_path, hub_url=hub.url))
    with serve(create_provider_app(config, on_event=handled.append)) as url:
        answer = httpx.post(
            f"{url}/v1/events", json=event, headers={"Authorization": f"Bearer {token}"}
        )
    assert answer.json() == {"status": "received"}
    assert [e.published_at for e in handled] == [PUBLISHED]
