"""A record query and the ``read:`` scopes of the SDK's token, against a real hub.

A token carries the scopes of the grants active when it was issued. A query of an item
whose first grant was approved since is refused ``403 insufficient-scope``; the SDK then
asks for a token after the refused one (if that one is at least
``_FETCH_SCOPE_RENEWAL_AGE`` old) and queries once more, so the department need not wait
for its token to run out (decision 0065). A query the department has no grant for costs
no more than one token request per interval. On SQLite and PostgreSQL, real servers on
loopback."""

from __future__ import annotations

import pytest

from onceonly.adapters import AccessDenied, NotFound, _client

from tests.adapters import test_adapters_events_publisher_hub as on_a_hub
from tests.hub.exchange_world import (
    ADDRESS,
    CONSUMER,
    IDENTITY,
    PURPOSE,
    SUBJECT,
    World,
)
from tests.hub_testing import added_audit_entries

# its world, a real hub on each database, built for this module too
world = on_a_hub.world


def test_a_query_of_an_item_granted_after_the_token_was_issued_is_answered(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_client, "_FETCH_SCOPE_RENEWAL_AGE", 0.0)
    with world.client() as hub:
        hub.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)  # a token, without read:person.identity
        with world.hub.admin() as admin:
            grant = admin.create_grant(
                consumer=CONSUMER, item=IDENTITY, purpose=PURPOSE, legal_basis="Act § 1"
            )
        try:
            with added_audit_entries(world.hub, action="token.issue") as tokens:
                # the owner has no identity record of SUBJECT: 404 from the owner, so the
                # query passed the hub (before: 403 insufficient-scope, the old token)
                with pytest.raises(NotFound):
                    hub.fetch(IDENTITY, SUBJECT, purpose=PURPOSE)
            assert len(tokens) == 1
        finally:
            with world.hub.admin() as admin:
                admin.revoke_grant(grant["id"])


def test_a_query_refused_the_scope_with_a_fresh_token_asks_for_no_other(world: World) -> None:
    with world.client() as hub:
        hub.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
        with added_audit_entries(world.hub, action="token.issue") as tokens:
            for _ in range(3):
                with pytest.raises(AccessDenied):
                    hub.fetch(IDENTITY, SUBJECT, purpose=PURPOSE)
        assert tokens == []  # the token is younger than the interval: no renewal


def test_a_query_refused_the_scope_renews_once_and_is_then_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_client, "_FETCH_SCOPE_RENEWAL_AGE", 0.0)
    with world.client() as hub:
        hub.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
        with added_audit_entries(world.hub, action="record.query") as queries:
            with added_audit_entries(world.hub, action="token.issue") as tokens:
                with pytest.raises(AccessDenied):
                    hub.fetch(IDENTITY, SUBJECT, purpose=PURPOSE)
        assert len(tokens) == 1
        refused = [entry for entry in queries if entry.get("item") == IDENTITY]
        assert [entry["outcome"] for entry in refused] == ["refused", "refused"]
