"""The hub's outbound calls end by a total deadline, not a per-read timeout.

A server on loopback sends its headers at once and then one byte every tenth of
``owner_timeout``: each read is quick, so httpx's timeout alone never fires and the
whole answer takes as long as the server likes. The owner's query and an event
delivery must end within ``owner_timeout`` (plus a small margin) and be audited as
failed. On SQLite and PostgreSQL.
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from joserfc.jwk import ECKey

from onceonly.adapters import HubClient, UpstreamError, public_jwks
from onceonly.hub.db import make_sync_engine
from onceonly.hub.kit.deadline import post_for_status

from tests.hub.exchange_world import (
    ADDRESS,
    ADDRESS_RECORD,
    OWNER,
    PURPOSE,
    SUBJECT,
    World,
    exchange_world,
)
from tests.hub_testing import serve, wait_until

OWNER_TIMEOUT = 0.5
MARGIN = 1.5  # scheduling on a busy two-core machine, and the hub's own work
TRICKLE = 6.0  # how long the trickling server takes to finish an answer
STEP = OWNER_TIMEOUT / 10  # between its bytes: no single read comes near the timeout


def trickling(answer: dict[str, Any]) -> FastAPI:
    """Answers every POST with its headers at once, then a space every ``STEP`` for
    ``TRICKLE`` seconds, then ``answer``: valid JSON, just slow."""
    app = FastAPI()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(int(TRICKLE / STEP)):
            yield b" "
            await asyncio.sleep(STEP)
        yield json.dumps(answer).encode()

    @app.post("/{path:path}")
    async def anything(path: str) -> StreamingResponse:
        return StreamingResponse(body(), media_type="application/json")

    return app


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[World]:
    settings = {"owner_timeout": OWNER_TIMEOUT, "event_max_attempts": 1}
    with exchange_world(
        database_url=database_url, tmp_path=tmp_path, event_poll_interval=0.05, **settings
    ) as built:
        yield built


def _warm(client: HubClient) -> None:
    """A record from the real owner: a token and warm connections, so that the trickling
    owner's call is all deadline. A busy machine may need a second try within the short
    ``owner_timeout`` of these tests."""
    for attempt in range(3):
        try:
            client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
            return
        except UpstreamError:
            if attempt == 2:
                raise


def test_an_owner_trickling_its_answer_is_cut_off_at_owner_timeout(world: World) -> None:
    answer = {"item": ADDRESS, "version": 1, "record": ADDRESS_RECORD}
    with serve(trickling(answer)) as owner, world.hub.admin() as admin, world.client() as client:
        _warm(client)
        admin.put_department(OWNER, name="Civil Registry Office", adapter_url=owner)
        started = time.monotonic()
        with pytest.raises(UpstreamError) as failed:
            client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
        elapsed = time.monotonic() - started
        entries = admin.audit_entries(action="record.query")["entries"]
    assert failed.value.status == 504
    assert failed.value.problem_type == "owner-timeout"
    assert elapsed < OWNER_TIMEOUT + MARGIN
    last = entries[-1]["entry"]
    assert (last["outcome"], last["reason"]) == ("failed", "owner-timeout")


def test_a_subscriber_trickling_its_acknowledgement_is_cut_off_at_owner_timeout(
    world: World, database_url: str
) -> None:
    owner_key = ECKey.generate_key("P-256", auto_kid=True)
    engine = make_sync_engine(database_url)

    def delivery() -> tuple[str, str | None]:
        with engine.connect() as conn:
            query = "SELECT status, last_error FROM event_deliveries"
            row = conn.execute(sa.text(query)).one_or_none()
        return (row[0], row[1]) if row else ("none", None)

    with serve(trickling({"ok": True})) as subscriber, world.hub.admin() as admin:
        admin.put_client(f"{OWNER}-adapter", department=OWNER, jwks=public_jwks(owner_key))
        admin.put_department("social-welfare", name="Social Welfare Board", adapter_url=subscriber)
        with world.client() as consumer:
            consumer.subscribe(ADDRESS)
        with HubClient(world.hub.url, client_id=f"{OWNER}-adapter", key=owner_key) as owner:
            owner.publish(ADDRESS, SUBJECT)
        wait_until(lambda: delivery()[0] in ("dead", "delivered"), within=OWNER_TIMEOUT + MARGIN)
        status, last_error = delivery()
        entries = admin.audit_entries(action="event.deliver")["entries"]
    engine.dispose()
    assert (status, last_error) == ("dead", "TimeoutException")
    outcomes = [(e["entry"]["outcome"], e["entry"].get("reason")) for e in entries]
    assert outcomes == [("ok", None), ("failed", "dead-letter")]


class _Pieces(httpx.AsyncByteStream):
    """An answer's body in ``count`` pieces of ``size`` bytes, as a transport hands them
    over; ``pulled`` counts those taken."""

    def __init__(self, size: int, count: int) -> None:
        self.size, self.count, self.pulled = size, count, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            self.pulled += 1
            yield b" " * self.size


@pytest.mark.parametrize(
    ("size", "pulled"),
    [
        (1024, 5),  # 4 KiB is not past the limit: the fifth piece is
        (4096, 2),
        (64 * 1024, 1),  # one piece of the transport's largest read (httpcore's 64 KiB)
    ],
)
@pytest.mark.anyio
async def test_an_answer_is_read_until_a_piece_passes_the_limit(size: int, pulled: int) -> None:
    """What post_for_status bounds: the body is read piece by piece, as the transport
    reads it, until the pieces pass ``limit`` (4 KiB): at most ``limit`` and one piece
    (up to 64 KiB) more, one piece held at a time, never the rest (100 pieces here)."""
    body = _Pieces(size, 100)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        status = await post_for_status(
            client, "http://adapter.test/v1/events", seconds=5.0, json={}, headers={}
        )
    assert (status, body.pulled) == (200, pulled)
