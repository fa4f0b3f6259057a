"""Whether one record query may go ahead: a pure decision over the facts, no I/O.

The checks run in the order of the exchange (auth → registry → access), so that a
caller learns nothing about an item's grants before its own token holds, and the
first failing check is the one reported and audited.
"""

from hub.access.exceptions import NoGrant
from hub.access.service import read_scope
from hub.auth.service import Caller, require_active_client
from hub.exchange.repository import ExchangeFacts
from hub.registry.exceptions import ItemRetired, UnknownItem


def admit(
    facts: ExchangeFacts | None, *, caller: Caller, item_id: str, purpose: str
) -> ExchangeFacts:
    """The facts, if the query is allowed; otherwise the refusal as a HubError."""
    if facts is None:
        raise UnknownItem(f"there is no data item {item_id!r}")
    require_active_client(caller, department=facts.client_department, status=facts.client_status)
    if facts.lifecycle == "retired":
        raise ItemRetired(f"data item {item_id!r} is retired and no longer served")
    caller.require_scope(read_scope(item_id))
    if facts.grant_id is None:
        raise NoGrant(
            f"department {caller.department!r} holds no active grant for {item_id!r}"
            f" with purpose {purpose!r}"
        )
    return facts
