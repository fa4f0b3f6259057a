"""Access routes: the purpose list (public), access requests and grants (people),
and the break-glass grant routes (``/v1/admin/grants``).

The principal and its role (``StewardDep``, ``BreakGlassDep``) come before the body
in every route: dependencies run in the order they are declared, so a caller without
the role learns nothing about how its body would have been judged (RFC 6750 §3.1:
authenticate first). Which department's objects a steward may touch is checked in
:mod:`onceonly.hub.access.policy`.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from onceonly.hub.access import service, workflow
from onceonly.hub.access.exceptions import (
    DuplicateRequest,
    GrantNotActive,
    GrantNotFound,
    NotShared,
    PurposesUnavailable,
    RequestNotFound,
    RequestNotPending,
    UnknownPurpose,
)
from onceonly.hub.access.purposes import purposes_for
from onceonly.hub.access.schemas import (
    AccessRequestIn,
    AccessRequestList,
    AccessRequestOut,
    ApproveIn,
    Box,
    GrantIn,
    GrantList,
    GrantOut,
    PurposeListOut,
    PurposeOut,
    RefuseIn,
    RenewIn,
    RequestStatus,
    RevokeIn,
)
from onceonly.hub.audit.dependencies import CurrentAudit, audited
from onceonly.hub.dependencies import ClockDep, SessionDep, SettingsDep, WriteSessionDep
from onceonly.hub.kit.jsonbody import json_body
from onceonly.hub.kit.problems import problems
from onceonly.hub.kit.strict import QueryBool
from onceonly.hub.people.dependencies import BreakGlassDep, PrincipalDep, StewardDep
from onceonly.hub.people.principal import Forbidden
from onceonly.hub.registry.exceptions import ItemRetired, UnknownDepartment, UnknownItem
from onceonly.hub.registry.schemas import DEPARTMENT_ID_PATTERN, ITEM_ID_PATTERN

router = APIRouter(prefix="/v1/admin/grants", tags=["administration"])
requests = APIRouter(prefix="/v1/access-requests", tags=["access"])
grants = APIRouter(prefix="/v1/grants", tags=["access"])
purposes = APIRouter(prefix="/v1/purposes", tags=["access"])

RowId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
DepartmentFilter = Annotated[str | None, Query(pattern=DEPARTMENT_ID_PATTERN)]
ItemFilter = Annotated[str | None, Query(pattern=ITEM_ID_PATTERN, max_length=128)]


@purposes.get("", response_model=PurposeListOut, responses=problems(PurposesUnavailable))
async def list_purposes(settings: SettingsDep) -> PurposeListOut:
    """The purposes a query or request may name (``config/purposes.toml``)."""
    listed = purposes_for(settings).purposes
    return PurposeListOut(
        purposes=[PurposeOut(code=p.code, title=p.title, description=p.description) for p in listed]
    )


@requests.post(
    "",
    response_model=AccessRequestOut,
    status_code=201,
    responses=problems(
        Forbidden,
        UnknownItem,
        ItemRetired,
        NotShared,
        UnknownPurpose,
        DuplicateRequest,
        PurposesUnavailable,
    ),
    dependencies=[Depends(audited("access.request"))],
)
async def request_access(
    principal: StewardDep,
    body: Annotated[AccessRequestIn, Depends(json_body(AccessRequestIn))],
    session: WriteSessionDep,
    settings: SettingsDep,
    scope: CurrentAudit,
    clock: ClockDep,
) -> AccessRequestOut:
    return await workflow.request_access(
        session, principal=principal, body=body, settings=settings, scope=scope, clock=clock
    )


@requests.get("", response_model=AccessRequestList, responses=problems(Forbidden))
async def list_requests(
    principal: PrincipalDep,
    session: SessionDep,
    clock: ClockDep,
    status: RequestStatus | None = None,
    box: Box | None = None,
    department: DepartmentFilter = None,
    item: ItemFilter = None,
    overdue: QueryBool | None = None,
) -> AccessRequestList:
    query = workflow.RequestQuery(
        status=status, box=box, department=department, item=item, overdue=overdue
    )
    return await workflow.list_requests(session, principal=principal, query=query, clock=clock)


@requests.get(
    "/{request_id}",
    response_model=AccessRequestOut,
    responses=problems(Forbidden, RequestNotFound),
)
async def get_request(
    request_id: RowId, principal: PrincipalDep, session: SessionDep, clock: ClockDep
) -> AccessRequestOut:
    return await workflow.get_request(
        session, principal=principal, request_id=request_id, clock=clock
    )


@requests.post(
    "/{request_id}/approve",
    response_model=AccessRequestOut,
    responses=problems(RequestNotFound, RequestNotPending, NotShared),
    dependencies=[Depends(audited("access.approve"))],
)
async def approve(
    request_id: RowId,
    principal: StewardDep,
    body: Annotated[ApproveIn, Depends(json_body(ApproveIn))],
    session: WriteSessionDep,
    settings: SettingsDep,
    scope: CurrentAudit,
    clock: ClockDep,
) -> AccessRequestOut:
    return await workflow.approve(
        session,
        principal=principal,
        request_id=request_id,
        body=body,
        settings=settings,
        scope=scope,
        clock=clock,
    )


@requests.post(
    "/{request_id}/refuse",
    response_model=AccessRequestOut,
    responses=problems(RequestNotFound, RequestNotPending),
    dependencies=[Depends(audited("access.refuse"))],
)
async def refuse(
    request_id: RowId,
    principal: StewardDep,
    body: Annotated[RefuseIn, Depends(json_body(RefuseIn))],
    session: WriteSessionDep,
    scope: CurrentAudit,
    clock: ClockDep,
) -> AccessRequestOut:
    return await workflow.refuse(
        session, principal=principal, request_id=request_id, body=body, scope=scope, clock=clock
    )


@requests.post(
    "/{request_id}/withdraw",
    response_model=AccessRequestOut,
    responses=problems(RequestNotFound, RequestNotPending),
    dependencies=[Depends(audited("access.withdraw"))],
)
async def withdraw(
    request_id: RowId,
    principal: StewardDep,
    session: WriteSessionDep,
    scope: CurrentAudit,
    clock: ClockDep,
) -> AccessRequestOut:
    return await workflow.withdraw(
        session, principal=principal, request_id=request_id, scope=scope, clock=clock
    )


@grants.get("", response_model=GrantList, responses=problems(Forbidden))
async def list_grants(
    principal: PrincipalDep,
    session: SessionDep,
    clock: ClockDep,
    consumer: DepartmentFilter = None,
    item: ItemFilter = None,
) -> GrantList:
    return await service.list_grants(
        session, principal=principal, consumer=consumer, item=item, clock=clock
    )


@grants.get("/{grant_id}", response_model=GrantOut, responses=problems(Forbidden, GrantNotFound))
async def get_grant(
    grant_id: RowId, principal: PrincipalDep, session: SessionDep, clock: ClockDep
) -> GrantOut:
    return await service.get_grant(session, principal=principal, grant_id=grant_id, clock=clock)


@grants.post(
    "/{grant_id}/revoke",
    response_model=GrantOut,
    responses=problems(GrantNotFound, GrantNotActive),
    dependencies=[Depends(audited("grant.revoke"))],
)
async def revoke(
    grant_id: RowId,
    principal: StewardDep,
    body: Annotated[RevokeIn, Depends(json_body(RevokeIn))],
    session: WriteSessionDep,
    scope: CurrentAudit,
    clock: ClockDep,
) -> GrantOut:
    return await service.revoke(
        session, principal=principal, grant_id=grant_id, body=body, scope=scope, clock=clock
    )


@grants.post(
    "/{grant_id}/renew",
    response_model=AccessRequestOut,
    status_code=201,
    responses=problems(
        GrantNotFound, GrantNotActive, DuplicateRequest, UnknownPurpose, PurposesUnavailable
    ),
    dependencies=[Depends(audited("grant.renew"))],
)
async def renew(
    grant_id: RowId,
    principal: StewardDep,
    body: Annotated[RenewIn, Depends(json_body(RenewIn))],
    session: WriteSessionDep,
    settings: SettingsDep,
    scope: CurrentAudit,
    clock: ClockDep,
) -> AccessRequestOut:
    """The consumer's steward asks to renew a grant: a new access request (docs/access.md)."""
    return await workflow.renew(
        session,
        principal=principal,
        grant_id=grant_id,
        body=body,
        settings=settings,
        scope=scope,
        clock=clock,
    )


@router.post(
    "",
    response_model=GrantOut,
    status_code=201,
    responses=problems(
        UnknownItem,
        ItemRetired,  # registry.item_for_exchange refuses a retired item
        UnknownDepartment,
        NotShared,
        UnknownPurpose,
        PurposesUnavailable,
    ),
    dependencies=[Depends(audited("grant.create"))],
)
async def create_grant(
    _: BreakGlassDep,
    body: Annotated[GrantIn, Depends(json_body(GrantIn))],
    session: WriteSessionDep,
    settings: SettingsDep,
    scope: CurrentAudit,
    clock: ClockDep,
) -> GrantOut:
    return await service.create_grant(
        session, body=body, settings=settings, scope=scope, clock=clock
    )


@router.get("", response_model=GrantList)
async def list_all_grants(
    _: BreakGlassDep, session: SessionDep, clock: ClockDep, consumer: DepartmentFilter = None
) -> GrantList:
    return await service.list_all_grants(session, consumer=consumer, clock=clock)


@router.post(
    "/{grant_id}/revoke",
    response_model=GrantOut,
    responses=problems(GrantNotFound, GrantNotActive),
    dependencies=[Depends(audited("grant.revoke"))],
)
async def revoke_with_break_glass(
    grant_id: RowId,
    principal: BreakGlassDep,
    session: WriteSessionDep,
    scope: CurrentAudit,
    clock: ClockDep,
) -> GrantOut:
    return await service.revoke_with_break_glass(
        session, principal=principal, grant_id=grant_id, scope=scope, clock=clock
    )
