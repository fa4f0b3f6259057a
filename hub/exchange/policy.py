"""Whether one record query may go ahead: a pure decision over the facts, no I/O.

The checks run in the order of the exchange (auth → registry → access), so that a
caller learns nothing about an item or its grants before its own token and proof
hold, and the first failing check is the one reported and audited.
"""

from onceonly.hub.access.policy import sharing_refusal
from onceonly.hub.auth.exceptions import InvalidDpopProof
from onceonly.hub.auth.scopes import read_scope
from onceonly.hub.auth.service import Caller, require_active_client
from onceonly.hub.exchange.repository import ExchangeFacts, QueryFacts
from onceonly.hub.registry.exceptions import ItemRetired, UnknownItem


def admit(
    facts: QueryFacts, *, caller: Caller, proof_fresh: bool, item_id: str, purpose: str
) -> ExchangeFacts:
    """The item's facts, if the query is allowed; otherwise the refusal as a HubError."""
    if not proof_fresh:  # RFC 9449 §11.1
        raise InvalidDpopProof("the DPoP proof was used before (jti replay)")
    require_active_client(
        caller,
        department=facts.client_department,
        status=facts.client_status,
        revoked=facts.revoked,
    )
    item = facts.item
    if item is None:
        raise UnknownItem(f"there is no data item {item_id!r}")
    if item.lifecycle == "retired":
        raise ItemRetired(f"data item {item_id!r} is retired and no longer served")
    caller.require_scope(read_scope(item_id))
    refusal = sharing_refusal(  # the rule change events follow too
        item_id=item_id,
        sharing_class=item.sharing_class,
        granted=item.grant_id is not None,
        department=caller.department,
        purpose=purpose,
    )
    if refusal is not None:
        raise refusal
    return item
