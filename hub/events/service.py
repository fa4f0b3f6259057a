"""Event rules: only owners publish; only subscribers the exchange would answer receive.

A department is told of a change to an item's record only while it could query that
record: the item is served (not retired), shared (its sharing class is not ``none``)
and the department holds an active grant for it (:func:`entitlement_refusal`, on the
exchange's own rule ``access.policy.sharing_refusal``). This is judged when it
subscribes, when an event is published (which subscribers get a delivery) and again
when each delivery is due (``onceonly.hub.events.delivery``). A subscription lasts as
long as its department's grants for the item do, without a break: once the last one
ends, a later grant does not bring it back (docs/events.md, decision 0060).
"""

from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from sqlalchemy.ext.asyncio import AsyncSession

from onceonly.hub.access.policy import sharing_refusal
from onceonly.hub.audit import repository as audit_repository
from onceonly.hub.audit.schemas import ReceiptOut
from onceonly.hub.audit.service import AuditScope, Receipt
from onceonly.hub.auth.scopes import publish_scope, read_scope
from onceonly.hub.auth.service import Caller
from onceonly.hub.events import repository
from onceonly.hub.events.exceptions import DeliveryNotFound, IdempotencyKeyReused, NotOwner
from onceonly.hub.events.models import Subscription
from onceonly.hub.events.schemas import (
    DeliveryList,
    DeliveryOut,
    EventAccepted,
    EventIn,
    SubscriptionOut,
)
from onceonly.hub.keys import HubKeys
from onceonly.hub.kit.clock import Clock, aware
from onceonly.hub.kit.problems import HubError
from onceonly.hub.registry import service as registry
from onceonly.hub.registry.exceptions import ItemRetired


def entitlement_refusal(
    *, item_id: str, lifecycle: str, sharing_class: str, granted: bool, department: str
) -> HubError | None:
    """Why ``department`` may not be told of changes to ``item_id`` (None: it may): the
    record query's refusals (``exchange.policy.admit``), for no particular purpose."""
    if lifecycle == "retired":
        return ItemRetired(f"data item {item_id!r} is retired and no longer served")
    return sharing_refusal(
        item_id=item_id, sharing_class=sharing_class, granted=granted, department=department
    )


@dataclass(frozen=True)
class Publication:
    """The answer to a publish, and whether it repeats an earlier one (same key)."""

    accepted: EventAccepted
    repeated: bool = False


async def publish(
    session: AsyncSession,
    *,
    caller: Caller,
    item_id: str,
    event: EventIn,
    idempotency_key: str | None,
    keys: HubKeys,
    scope: AuditScope,
    clock: Clock,
) -> Publication:
    """Store the event and one delivery per subscriber, with its audit entry, atomically.

    The raw subject is stored only for the deliveries that will send it: an event
    nobody subscribes to keeps only the pseudonym. A publish repeated with the
    ``idempotency_key`` of an earlier one of the caller's department answers with that
    event and its receipt; it stores nothing and writes no entry (it decides nothing)."""
    pseudonym = keys.pseudonym(event.subject)
    # Sealed, accepted or refused: the entry is the caller's to read, and the hub never
    # checks that a subject is one of the owner's, so an owner publishing about any
    # identifier would read its pseudonym (decision 0069 and its follow-up).
    scope.note(item=item_id, sealed_subject=pseudonym)
    served = await registry.item_for_exchange(session, item_id)
    caller.require_scope(publish_scope(item_id))
    if served.item.owner_id != caller.department:
        raise NotOwner(f"department {caller.department!r} does not own {item_id!r}")
    now = clock.now()
    departments = [
        subscriber.department
        for subscriber in await repository.subscribers(session, item_id=item_id, now=now)
        if entitlement_refusal(
            item_id=item_id,
            lifecycle=served.item.lifecycle,
            sharing_class=served.item.sharing_class,
            granted=subscriber.granted,
            department=subscriber.department,
        )
        is None
    ]
    event_id = uuid4().hex
    row = {
        "id": event_id,
        "item_id": item_id,
        "owner_id": caller.department,
        "kind": event.kind,
        "subject": event.subject if departments else None,
        "subject_pseudonym": pseudonym,
        "published_at": now,
        "idempotency_key": idempotency_key,
    }
    if not await repository.insert_event(session, event=row, departments=departments):
        assert idempotency_key is not None  # only a key can collide
        return await _earlier(session, caller=caller, key=idempotency_key, row=row)
    receipt = await scope.record_change(session, event=event_id)
    await repository.set_audit_index(session, event_id=event_id, index=receipt.index)
    return Publication(
        EventAccepted(
            event_id=event_id, subscribers=len(departments), receipt=ReceiptOut(**receipt.as_json())
        )
    )


async def _earlier(
    session: AsyncSession, *, caller: Caller, key: str, row: dict[str, Any]
) -> Publication:
    """The event first published under ``key``, if ``row`` announces the same change
    (item, kind and subject, compared by pseudonym: the raw subject may be erased)."""
    found = await repository.event_with_key(session, owner=caller.department, key=key)
    if found is None or found.audit_index is None:  # the key's event is committed with both
        raise RuntimeError("an idempotency key collided with no committed event")
    if (found.item_id, found.kind, found.subject_pseudonym) != (
        row["item_id"],
        row["kind"],
        row["subject_pseudonym"],
    ):
        raise IdempotencyKeyReused(
            f"idempotency key {key!r} was used for another event (item, kind or subject)"
        )
    entry = await audit_repository.get_entry(session, found.audit_index)
    if entry is None:
        raise RuntimeError(f"event {found.id} names no audit entry {found.audit_index}")
    receipt = Receipt(entry.idx, entry.leaf_hash)
    accepted = EventAccepted(
        event_id=found.id, subscribers=found.subscribers, receipt=ReceiptOut(**receipt.as_json())
    )
    return Publication(accepted, repeated=True)


async def subscribe(
    session: AsyncSession, *, caller: Caller, item_id: str, scope: AuditScope, clock: Clock
) -> SubscriptionOut:
    """Subscribe the caller's department to changes of an item it could query now. A
    subscription that ended with its department's last grant (a break since it was
    made) starts again from now."""
    scope.note(item=item_id)
    served = await registry.item_for_exchange(session, item_id)
    caller.require_scope(read_scope(item_id))
    now = clock.now()
    department = caller.department
    refusal = entitlement_refusal(
        item_id=item_id,
        lifecycle=served.item.lifecycle,
        sharing_class=served.item.sharing_class,
        granted=await repository.entitled_since(
            session, department=department, item_id=item_id, since=now, now=now
        ),
        department=department,
    )
    if refusal is not None:
        raise refusal
    row = await repository.get_subscription(session, department=department, item_id=item_id)
    if row is None:
        row = Subscription(department_id=department, item_id=item_id, created_at=now)
        repository.add(session, row)
    elif not await repository.entitled_since(
        session, department=department, item_id=item_id, since=aware(row.created_at), now=now
    ):
        row.created_at = now
    await session.flush()
    await scope.record_change(session)
    return SubscriptionOut(
        department=row.department_id, item=row.item_id, created_at=row.created_at
    )


async def unsubscribe(
    session: AsyncSession, *, caller: Caller, item_id: str, scope: AuditScope
) -> None:
    scope.note(item=item_id)
    await repository.delete_subscription(session, department=caller.department, item_id=item_id)
    await scope.record_change(session)


async def deliveries(session: AsyncSession, *, status: str, limit: int) -> DeliveryList:
    rows = await repository.list_deliveries(session, status=status, limit=limit)
    return DeliveryList(deliveries=[DeliveryOut(**row) for row in rows])


async def replay(
    session: AsyncSession, *, delivery_id: str, scope: AuditScope, clock: Clock
) -> None:
    """Send a dead letter again from the start of its retry schedule."""
    requeued = await repository.requeue(session, delivery_id=delivery_id, now=clock.now())
    if requeued is None:
        raise DeliveryNotFound(f"there is no dead letter {delivery_id!r}")
    scope.note(  # as the event's other entries: found by item and subject too
        target=requeued["department_id"],
        event=requeued["event_id"],
        item=requeued["item_id"],
        subject=requeued["subject_pseudonym"],
    )
    await scope.record_change(session)
