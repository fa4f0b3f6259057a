"""The admission policy of one record query (``policy.admit``), as a table: each fact
that can refuse a query, the refusal it gives, and which refusal wins when several
facts would refuse (the order of the exchange: auth, registry, access)."""

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from onceonly.hub.access.exceptions import NoGrant, NotShared
from onceonly.hub.auth.callers import Caller
from onceonly.hub.auth.exceptions import InsufficientScope, InvalidDpopProof, InvalidToken
from onceonly.hub.exchange import policy
from onceonly.hub.exchange.repository import ExchangeFacts, QueryFacts
from onceonly.hub.registry.exceptions import ItemRetired, UnknownItem

ITEM = "person.residential-address"
DEPARTMENT = "social-welfare"
CALLER = Caller(
    client_id="social-welfare-adapter",
    department=DEPARTMENT,
    scopes=frozenset({policy.read_scope(ITEM)}),
)
GRANTED = ExchangeFacts(
    item_id=ITEM,
    lifecycle="active",
    deprecated_at=None,
    version=1,
    schema={"type": "object"},
    fingerprint="f" * 64,
    owner="civil-registry",
    adapter_url="http://127.0.0.1:9",
    sharing_class="personal",
    grant_id="g1",
    grant_fields=None,
    grant_version=None,
)
STANDING = {"client_department": DEPARTMENT, "client_status": "active", "revoked": False}


def admit(
    *,
    item: dict[str, Any] | None = None,
    known: bool = True,
    caller: Caller = CALLER,
    fresh: bool = True,
    **standing: Any,
) -> ExchangeFacts:
    """``policy.admit`` on the granted facts changed by ``item`` and ``standing``;
    ``known=False``: the item does not exist."""
    facts = QueryFacts(
        item=dataclasses.replace(GRANTED, **(item or {})) if known else None,
        **{**STANDING, **standing},
    )
    return policy.admit(facts, caller=caller, proof_fresh=fresh, item_id=ITEM, purpose="benefit")


def test_a_granted_query_is_admitted_with_the_items_facts() -> None:
    assert admit() == GRANTED


UNSCOPED = dataclasses.replace(CALLER, scopes=frozenset())

REFUSALS: list[tuple[str, dict[str, Any], type[Exception]]] = [
    ("replayed proof", {"fresh": False}, InvalidDpopProof),
    ("revoked token", {"revoked": True}, InvalidToken),
    ("client disabled", {"client_status": "disabled"}, InvalidToken),
    ("client deleted", {"client_status": None, "client_department": None}, InvalidToken),
    ("client moved department", {"client_department": "tax-office"}, InvalidToken),
    ("no such item", {"known": False}, UnknownItem),
    ("item retired", {"item": {"lifecycle": "retired"}}, ItemRetired),
    ("token without the item's scope", {"caller": UNSCOPED}, InsufficientScope),
    ("item made unshareable", {"item": {"sharing_class": "none"}}, NotShared),
    ("no active grant", {"item": {"grant_id": None}}, NoGrant),
    # When several facts refuse, the earlier step of the exchange is the one reported:
    # a caller learns nothing about an item before its own token and proof hold.
    ("replayed proof of a revoked token", {"fresh": False, "revoked": True}, InvalidDpopProof),
    ("revoked token, unknown item", {"revoked": True, "known": False}, InvalidToken),
    ("retired item, no scope", {"item": {"lifecycle": "retired"}, "caller": UNSCOPED}, ItemRetired),
    ("no scope, no grant", {"item": {"grant_id": None}, "caller": UNSCOPED}, InsufficientScope),
    ("unshareable, no grant", {"item": {"sharing_class": "none", "grant_id": None}}, NotShared),
]


@pytest.mark.parametrize(
    ("facts", "refusal"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_a_query_is_refused_by_the_first_failing_fact(
    facts: dict[str, Any], refusal: type[Exception]
) -> None:
    with pytest.raises(refusal):
        admit(**facts)


def test_deprecated_items_and_field_grants_are_admitted() -> None:
    item = {"lifecycle": "deprecated", "deprecated_at": datetime(2026, 1, 1, tzinfo=UTC)}
    assert admit(item={**item, "grant_fields": ["city"]}).grant_fields == ["city"]
