"""A grant's end written by hand in sqlite3 in another spelling than the hub's (an ISO
8601 'T', 'Z', an offset) ends it for the exchange when the API says it ended
(docs/operations.md, "Changing the registry or grants with SQL"). SQLite only: it keeps
a time as the text it was given, where PostgreSQL keeps a time.
"""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from onceonly.adapters import DPoPKey
from onceonly.hub.db import make_sync_engine

from tests.hub.exchange_world import (
    ADDRESS,
    CONSUMER,
    SUBJECT,
    World,
    access_token,
    module_exchange_world,
)
from tests.hub_testing import problem_type

DPOP = DPoPKey.generate()


@pytest.fixture(scope="module", params=["sqlite"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """The exchange world without its grant of the address: each test's grant is the
    consumer's only one of it, so a token carries the item's scope only while it lasts."""
    with module_exchange_world(request, tmp_path_factory) as built:
        for held in break_glass(built, "GET", "/v1/admin/grants").json()["grants"]:
            if (held["item"], held["status"]) == (ADDRESS, "active"):
                break_glass(built, "POST", f"/v1/admin/grants/{held['id']}/revoke")
        yield built


def query(world: World, token: str, purpose: str) -> httpx.Response:
    url = f"{world.hub.url}/v1/items/{ADDRESS}/records/query"
    return httpx.post(
        url,
        json={"subject": SUBJECT, "purpose": purpose},
        headers=DPOP.headers("POST", url, token),
        timeout=30,
    )


def break_glass(world: World, method: str, path: str, **body: Any) -> httpx.Response:
    return httpx.request(
        method,
        world.hub.url + path,
        json=body or None,
        headers={"Authorization": f"Bearer {world.hub.keys.admin_token}"},
        timeout=30,
    )


def grant(world: World, purpose: str) -> str:
    body = {"consumer": CONSUMER, "item": ADDRESS, "purpose": purpose, "legal_basis": "test"}
    made = break_glass(world, "POST", "/v1/admin/grants", **body)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def end_by_hand(world: World, grant_id: str, end: str) -> None:
    """``UPDATE grants SET valid_until = <end>`` as an operator types it in sqlite3."""
    engine = make_sync_engine(world.hub.settings.database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE grants SET valid_until = {end} WHERE id = :id"), {"id": grant_id}
        )
    engine.dispose()


def status_of(world: World, grant_id: str) -> str:
    listed = break_glass(world, "GET", "/v1/admin/grants").json()["grants"]
    return str(next(g["status"] for g in listed if g["id"] == grant_id))


# An end a minute ago, in spellings SQLite's text sorts after the hub's own
# ('2026-12-07 20:49:16.123456') for the rest of the day, or longer.
ENDED = {
    "T and Z": "strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-1 minute')",
    "T, no offset": "strftime('%Y-%m-%dT%H:%M:%S', 'now', '-1 minute')",
    "T and an offset": "strftime('%Y-%m-%dT%H:%M:%S+14:00', 'now', '+14 hours', '-1 minute')",
}
PURPOSES = dict(zip(ENDED, ["statistics", "tax-audit", "debt-collection"], strict=True))


@pytest.mark.parametrize("spelling", list(ENDED))
def test_a_grant_ended_by_hand_in_another_spelling_serves_no_more(
    world: World, spelling: str
) -> None:
    """Before, the API listed it expired and the exchange served it until the day ended
    (the admission SQL compared text: 'T' sorts after ' ')."""
    purpose = PURPOSES[spelling]
    grant_id = grant(world, purpose)
    try:
        token = access_token(world, DPOP)
        assert query(world, token, purpose).status_code == 200
        end_by_hand(world, grant_id, ENDED[spelling])
        assert status_of(world, grant_id) == "expired"
        # The token held still carries the item's scope: the grant is judged again.
        refused = query(world, token, purpose)
        assert (refused.status_code, problem_type(refused)) == (403, "no-grant")
        # A new token no longer carries it.
        later = query(world, access_token(world, DPOP), purpose)
        assert (later.status_code, problem_type(later)) == (403, "insufficient-scope")
    finally:
        break_glass(world, "POST", f"/v1/admin/grants/{grant_id}/revoke")


def test_a_grant_whose_end_is_written_by_hand_ahead_still_serves(world: World) -> None:
    """The same reading does not end a grant early: an hour ahead, at an offset whose
    text may sort before the hub's."""
    purpose = "anti-money-laundering"
    grant_id = grant(world, purpose)
    try:
        end_by_hand(
            world, grant_id, "strftime('%Y-%m-%dT%H:%M:%S-12:00', 'now', '-12 hours', '+1 hour')"
        )
        assert status_of(world, grant_id) == "active"
        assert query(world, access_token(world, DPOP), purpose).status_code == 200
    finally:
        break_glass(world, "POST", f"/v1/admin/grants/{grant_id}/revoke")
