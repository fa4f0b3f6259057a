"""Grant routes (administrator, until the access-request workflow arrives)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from hub.access import service
from hub.access.schemas import GrantIn, GrantList, GrantOut
from hub.audit.dependencies import CurrentAudit, audited
from hub.auth.dependencies import AdminDep
from hub.db import SessionDep, WriteSessionDep
from hub.kit.jsonbody import json_body
from hub.registry.schemas import DEPARTMENT_ID_PATTERN

router = APIRouter(prefix="/v1/admin/grants", tags=["administration"])


@router.post(
    "", response_model=GrantOut, status_code=201, dependencies=[Depends(audited("grant.create"))]
)
async def create_grant(
    body: Annotated[GrantIn, Depends(json_body(GrantIn))],
    session: WriteSessionDep,
    _: AdminDep,
    scope: CurrentAudit,
) -> GrantOut:
    return await service.create_grant(session, body=body, scope=scope)


@router.get("", response_model=GrantList)
async def list_grants(
    session: SessionDep,
    _: AdminDep,
    consumer: Annotated[str | None, Query(pattern=DEPARTMENT_ID_PATTERN)] = None,
) -> GrantList:
    return await service.list_grants(session, consumer=consumer)


@router.post(
    "/{grant_id}/revoke", response_model=GrantOut, dependencies=[Depends(audited("grant.revoke"))]
)
async def revoke_grant(
    grant_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
    session: WriteSessionDep,
    _: AdminDep,
    scope: CurrentAudit,
) -> GrantOut:
    return await service.revoke_grant(session, grant_id=grant_id, scope=scope)
