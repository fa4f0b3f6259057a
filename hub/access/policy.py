"""Who may see and change access requests and grants. Pure: no I/O.

- A steward sees the requests and grants where a department they steward is the
  consumer or the owner; anyone else gets "not found", exactly as for an id that
  does not exist (the answer never tells that a request exists).
- An auditor sees everything and changes nothing; the break-glass token sees
  everything and may act as any department's steward, but never decides a request.
- Administrators (people) have no rights here: granting access is the data
  owners' decision, not the operators'.
- A request is decided (approved or refused) by a signed-in person who stewards the
  owner department, who did not make the request and who does not steward the
  consumer department: no one approves a request on both sides.
- A department receives an item's records, and change events about them, only while
  the item is shared and it holds an active grant for it (:func:`sharing_refusal`,
  the one rule of the exchange and of events).
"""

from onceonly.hub.access.exceptions import NoGrant, NotShared
from onceonly.hub.access.models import AccessRequest
from onceonly.hub.kit.problems import HubError
from onceonly.hub.people.principal import Forbidden, Principal

_NO_ROLE = (
    "access requests and grants are for stewards and auditors; {name!r} has neither role here"
)


def require_reader(principal: Principal) -> None:
    """Reading requests and grants: stewards, auditors, break-glass."""
    if not (principal.break_glass or principal.auditor or principal.stewards):
        raise Forbidden(_NO_ROLE.format(name=principal.name))


def require_actor(principal: Principal) -> None:
    """Changing requests and grants: stewards and break-glass; auditors change nothing."""
    if principal.break_glass or principal.stewards:
        return
    if principal.auditor:
        raise Forbidden("auditors read access requests and grants; they change nothing")
    raise Forbidden(_NO_ROLE.format(name=principal.name))


def visible_departments(principal: Principal) -> frozenset[str] | None:
    """The departments whose requests and grants the principal sees (None: all)."""
    return None if principal.break_glass or principal.auditor else principal.stewards


def may_see(principal: Principal, *, consumer: str, owner: str) -> bool:
    departments = visible_departments(principal)
    return departments is None or consumer in departments or owner in departments


def require_decider(principal: Principal, request: AccessRequest) -> None:
    """Approving or refusing ``request`` (see the module's docstring)."""
    principal.require_person()
    if request.owner_id not in principal.stewards:
        raise Forbidden(
            f"only a steward of the owner department {request.owner_id!r} decides this request"
        )
    if principal.name == request.requested_by:
        raise Forbidden("the person who made a request does not decide it")
    if request.consumer_id in principal.stewards:
        raise Forbidden(
            f"{principal.name!r} stewards both {request.owner_id!r} and {request.consumer_id!r};"
            " no one approves a request on both sides"
        )


def require_consumer_steward(principal: Principal, department: str) -> None:
    """Making or withdrawing a request: a steward of the consumer department."""
    principal.require_steward(department)


def require_grant_party(principal: Principal, *, consumer: str, owner: str) -> None:
    """Revoking a grant: the owner's steward, or the consumer's (giving it up)."""
    if not (principal.stewards_department(owner) or principal.stewards_department(consumer)):
        raise Forbidden(f"only stewards of {owner!r} or {consumer!r} revoke this grant")


def sharing_refusal(
    *, item_id: str, sharing_class: str, granted: bool, department: str, purpose: str | None = None
) -> HubError | None:
    """Why ``department`` may not receive records of ``item_id`` (None: it may). A record
    query (``purpose`` given: ``granted`` says whether a grant for it is active) and a
    change event (no purpose: any active grant of the department) follow this one rule
    (docs/access.md, docs/events.md, decision 0060):

    - an item of sharing class ``none`` is never shared, whatever grants exist (it may
      have been made unshareable after grants were made);
    - otherwise deny by default: only an active grant entitles.
    """
    if sharing_class == "none":
        return NotShared(f"data item {item_id!r} has sharing class 'none' and is never shared")
    if not granted:
        with_purpose = "" if purpose is None else f" with purpose {purpose!r}"
        return NoGrant(
            f"department {department!r} holds no active grant for {item_id!r}{with_purpose}"
        )
    return None
