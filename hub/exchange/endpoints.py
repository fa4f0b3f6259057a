"""The record query route (docs/protocol.md §3)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from onceonly.hub.access.exceptions import NoGrant, NotShared
from onceonly.hub.audit.dependencies import CurrentAudit, audited
from onceonly.hub.auth.dependencies import TokenCaller
from onceonly.hub.auth.exceptions import InsufficientScope
from onceonly.hub.exchange import service
from onceonly.hub.exchange.dependencies import exchange_context
from onceonly.hub.exchange.exceptions import (
    OwnerInvalidResponse,
    OwnerTimeout,
    OwnerUnavailable,
    RecordNotFound,
)
from onceonly.hub.exchange.schemas import RecordAnswer, RecordQuery
from onceonly.hub.kit.jsonbody import json_body
from onceonly.hub.kit.problems import problems
from onceonly.hub.registry.exceptions import ItemRetired, UnknownItem, UnknownVersion
from onceonly.hub.registry.schemas import ItemId

router = APIRouter(prefix="/v1/items", tags=["exchange"])


@router.post(
    "/{item_id}/records/query",
    response_model=RecordAnswer,
    responses=problems(
        InsufficientScope,
        NoGrant,
        NotShared,
        UnknownItem,
        UnknownVersion,
        RecordNotFound,
        ItemRetired,
        OwnerInvalidResponse,
        OwnerUnavailable,
        OwnerTimeout,
    ),
    dependencies=[Depends(audited("record.query"))],
)
async def query_record(
    item_id: ItemId,
    scope: CurrentAudit,
    caller: TokenCaller,
    query: Annotated[RecordQuery, Depends(json_body(RecordQuery))],
    request: Request,
    response: Response,
) -> RecordAnswer:
    context, clock = exchange_context(request)
    outcome = await service.query_record(
        caller=caller, item_id=item_id, query=query, context=context, scope=scope, clock=clock
    )
    if outcome.deprecated is not None:
        response.headers["Deprecation"] = outcome.deprecated  # RFC 9745 §2
    return outcome.answer
