"""Change event routes: owners publish, consumers subscribe, operators replay dead letters."""

from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Path, Query, Response

from onceonly.hub.access.exceptions import NoGrant, NotShared
from onceonly.hub.audit.dependencies import CurrentAudit, audited
from onceonly.hub.auth.dependencies import CurrentCaller
from onceonly.hub.dependencies import ClockDep, DelivererDep, KeysDep, SessionDep, WriteSessionDep
from onceonly.hub.events import service
from onceonly.hub.events.exceptions import DeliveryNotFound, IdempotencyKeyReused, NotOwner
from onceonly.hub.events.schemas import (
    IDEMPOTENCY_KEY_PATTERN,
    DeliveryList,
    EventAccepted,
    EventIn,
    SubscriptionOut,
    idempotency_key,
)
from onceonly.hub.kit.jsonbody import json_body
from onceonly.hub.kit.problems import problems
from onceonly.hub.kit.strict import DecimalDigits
from onceonly.hub.people.dependencies import AdministratorDep
from onceonly.hub.registry.exceptions import ItemRetired, UnknownItem
from onceonly.hub.registry.schemas import ItemId

router = APIRouter(prefix="/v1/items", tags=["events"])
admin = APIRouter(prefix="/v1/admin/events", tags=["administration"])


async def _idempotency_key(
    value: Annotated[
        str | None, Header(alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY_PATTERN)
    ] = None,
) -> str | None:
    return idempotency_key(value)


IdempotencyKey = Annotated[str | None, Depends(_idempotency_key)]


@router.post(
    "/{item_id}/events",
    response_model=EventAccepted,
    status_code=202,
    responses={
        200: {"model": EventAccepted, "description": "a repeat (same Idempotency-Key)"},
        **problems(NotOwner, UnknownItem, ItemRetired, IdempotencyKeyReused),
    },
    dependencies=[Depends(audited("event.publish"))],
)
async def publish(
    item_id: ItemId,
    scope: CurrentAudit,
    caller: CurrentCaller,
    event: Annotated[EventIn, Depends(json_body(EventIn))],
    session: WriteSessionDep,
    keys: KeysDep,
    deliverer: DelivererDep,
    tasks: BackgroundTasks,
    key: IdempotencyKey,
    response: Response,
    clock: ClockDep,
) -> EventAccepted:
    """``202`` for a new event; ``200`` with the same answer for a repeat (same key)."""
    published = await service.publish(
        session,
        caller=caller,
        item_id=item_id,
        event=event,
        idempotency_key=key,
        keys=keys,
        scope=scope,
        clock=clock,
    )
    if published.repeated:
        response.status_code = 200
    else:  # after the commit: deliver now rather than at the next poll
        tasks.add_task(deliverer.wake)
    return published.accepted


@router.put(
    "/{item_id}/subscription",
    response_model=SubscriptionOut,
    responses=problems(UnknownItem, ItemRetired, NoGrant, NotShared),
    dependencies=[Depends(audited("event.subscribe"))],
)
async def subscribe(
    item_id: ItemId,
    scope: CurrentAudit,
    caller: CurrentCaller,
    session: WriteSessionDep,
    clock: ClockDep,
) -> SubscriptionOut:
    return await service.subscribe(
        session, caller=caller, item_id=item_id, scope=scope, clock=clock
    )


@router.delete(
    "/{item_id}/subscription",
    status_code=204,
    responses=problems(UnknownItem),
    dependencies=[Depends(audited("event.unsubscribe"))],
)
async def unsubscribe(
    item_id: ItemId, scope: CurrentAudit, caller: CurrentCaller, session: WriteSessionDep
) -> Response:
    await service.unsubscribe(session, caller=caller, item_id=item_id, scope=scope)
    return Response(status_code=204)


@admin.get("/deliveries", response_model=DeliveryList)
async def deliveries(
    session: SessionDep,
    _: AdministratorDep,
    status: Literal["pending", "delivered", "dead", "cancelled"] = "dead",
    limit: Annotated[int, Query(ge=1, le=1000), DecimalDigits] = 100,
) -> DeliveryList:
    return await service.deliveries(session, status=status, limit=limit)


@admin.post(
    "/deliveries/{delivery_id}/replay",
    status_code=204,
    responses=problems(DeliveryNotFound),
    dependencies=[Depends(audited("event.replay"))],
)
async def replay(
    delivery_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
    scope: CurrentAudit,
    _: AdministratorDep,
    session: WriteSessionDep,
    deliverer: DelivererDep,
    tasks: BackgroundTasks,
    clock: ClockDep,
) -> Response:
    await service.replay(session, delivery_id=delivery_id, scope=scope, clock=clock)
    tasks.add_task(deliverer.wake)
    return Response(status_code=204)
