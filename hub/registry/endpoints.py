"""Registry routes: public catalogue reads; departments and clients by administrators;
items by the stewards of their owner department (docs/access.md, "Roles"); a change
that one steward may not make alone waits for an administrator's decision
(``/v1/admin/registry-changes``, docs/registry.md).

In the write routes the principal comes before the body: dependencies run in the
order they are declared, so a caller who is not signed in learns nothing about how
its body would have been judged (RFC 6750 §3.1: authenticate first).
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from onceonly.hub.audit.dependencies import CurrentAudit, audited
from onceonly.hub.dependencies import ClockDep, SessionDep, SettingsDep, WriteSessionDep
from onceonly.hub.kit.jsonbody import json_body
from onceonly.hub.kit.problems import problems
from onceonly.hub.kit.strict import DecimalDigits
from onceonly.hub.ops import openapi
from onceonly.hub.people.dependencies import AdministratorDep, PrincipalDep, StewardDep
from onceonly.hub.people.principal import Forbidden, Principal
from onceonly.hub.registry import service
from onceonly.hub.registry.exceptions import (
    AdapterUrlNotHttps,
    CompatibilityNotJudged,
    IncompatibleVersion,
    InvalidJwks,
    InvalidSchema,
    ItemRetired,
    NotSecondPerson,
    NotSteward,
    RegistryChangeNotFound,
    RegistryChangeNotPending,
    RegistryConflict,
    UnknownDepartment,
    UnknownItem,
    UnknownVersion,
)
from onceonly.hub.registry.schemas import (
    CLIENT_ID_PATTERN,
    DEPARTMENT_ID_PATTERN,
    ITEM_ID_PATTERN,
    ApproveChangeIn,
    ChangeStatus,
    Classification,
    ClientIn,
    ClientOut,
    DepartmentIn,
    DepartmentList,
    DepartmentOut,
    ItemDocument,
    ItemId,
    ItemList,
    ItemOut,
    ItemQuery,
    ItemVersionOut,
    Lifecycle,
    RefuseChangeIn,
    RegistryChangeList,
    RegistryChangeOut,
    SharingClass,
    VersionDocument,
    VersionList,
)

DepartmentId = Annotated[str, Path(pattern=DEPARTMENT_ID_PATTERN)]
ClientId = Annotated[str, Path(pattern=CLIENT_ID_PATTERN)]
ChangeId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
_DECISION_PROBLEMS = problems(
    RegistryChangeNotFound, RegistryChangeNotPending, NotSecondPerson, RegistryConflict
)


def _actor(principal: Principal) -> service.Actor:
    """Items are changed by the stewards of their owner department (break-glass: any)."""
    return service.Actor(name=principal.name, departments=principal.steward_departments)


catalogue = APIRouter(prefix="/v1/items", tags=["registry"])
admin = APIRouter(prefix="/v1/admin", tags=["administration"])


@catalogue.get("", response_model=ItemList)
async def list_items(
    session: SessionDep,
    q: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    owner: Annotated[str | None, Query(pattern=DEPARTMENT_ID_PATTERN)] = None,
    tag: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    classification: Classification | None = None,
    sharing_class: SharingClass | None = None,
    lifecycle: Lifecycle | None = None,
) -> ItemList:
    """The catalogue; every given criterion must hold (``q``: text in id, title, description)."""
    query = ItemQuery(
        q=q,
        owner=owner,
        tag=tag,
        classification=classification,
        sharing_class=sharing_class,
        lifecycle=lifecycle,
    )
    return await service.list_items(session, query)


@catalogue.get("/{item_id}", response_model=ItemOut, responses=problems(UnknownItem))
async def get_item(item_id: ItemId, session: SessionDep) -> ItemOut:
    return await service.describe_item(session, item_id)


@catalogue.get("/{item_id}/versions", response_model=VersionList, responses=problems(UnknownItem))
async def list_versions(item_id: ItemId, session: SessionDep) -> VersionList:
    return await service.list_versions(session, item_id)


@catalogue.get(
    "/{item_id}/versions/{version}",
    response_model=ItemVersionOut,
    response_model_by_alias=True,
    responses=problems(UnknownItem, UnknownVersion),
)
async def get_version(
    item_id: ItemId,
    version: Annotated[int, Path(ge=1, le=1_000_000), DecimalDigits],
    session: SessionDep,
) -> ItemVersionOut:
    return await service.describe_version(session, item_id, version)


@catalogue.get(
    "/{item_id}/openapi.json",
    responses={
        200: {"description": "an OpenAPI 3.1 document", "content": {"application/json": {}}},
        **problems(UnknownItem, ItemRetired),
    },
)
async def get_item_openapi(item_id: ItemId, request: Request, session: SessionDep) -> JSONResponse:
    """The record query of this item, with the record's own schema per version, for
    generating a typed client (decision 0024). Public, as the catalogue is."""
    item = await service.describe_item(session, item_id)
    if item.lifecycle == "retired":
        raise ItemRetired(f"data item {item_id!r} is retired: it has no record query")
    schemas = {
        version: (await service.describe_version(session, item_id, version)).json_schema
        for version in range(1, item.latest_version + 1)
    }
    document = openapi.item_document(
        request.app.openapi(), item_id=item_id, title=item.title, schemas=schemas
    )
    return JSONResponse(document)


@admin.get("/departments", response_model=DepartmentList)
async def list_departments(session: SessionDep, _: AdministratorDep) -> DepartmentList:
    """Every department, by id: what a catalogue import checks before it creates one."""
    return await service.list_departments(session)


@admin.get(
    "/departments/{department_id}",
    response_model=DepartmentOut,
    responses=problems(UnknownDepartment),
)
async def get_department(
    department_id: DepartmentId, session: SessionDep, _: AdministratorDep
) -> DepartmentOut:
    return await service.get_department(session, department_id)


@admin.put(
    "/departments/{department_id}",
    response_model=DepartmentOut,
    responses=problems(AdapterUrlNotHttps),
    dependencies=[Depends(audited("registry.department.put"))],
)
async def put_department(
    department_id: DepartmentId,
    _: AdministratorDep,
    body: Annotated[DepartmentIn, Depends(json_body(DepartmentIn))],
    session: WriteSessionDep,
    scope: CurrentAudit,
    settings: SettingsDep,
) -> DepartmentOut:
    return await service.put_department(
        session,
        department_id=department_id,
        body=body,
        scope=scope,
        require_https=settings.is_production,
        loopback_allowed=settings.adapters_on_loopback,
    )


@admin.put(
    "/clients/{client_id}",
    response_model=ClientOut,
    responses=problems(UnknownDepartment, RegistryConflict, InvalidJwks),
    dependencies=[Depends(audited("registry.client.put"))],
)
async def put_client(
    client_id: ClientId,
    _: AdministratorDep,
    body: Annotated[ClientIn, Depends(json_body(ClientIn))],
    session: WriteSessionDep,
    scope: CurrentAudit,
) -> ClientOut:
    return await service.put_client(session, client_id=client_id, body=body, scope=scope)


@admin.put(
    "/items/{item_id}",
    response_model=ItemOut,
    responses={
        202: {"model": RegistryChangeOut, "description": "waits for an administrator"},
        **problems(NotSteward, UnknownDepartment, RegistryConflict, InvalidSchema),
    },
    dependencies=[Depends(audited("registry.item.put"))],
)
async def put_item(
    item_id: ItemId,
    principal: StewardDep,
    document: Annotated[ItemDocument, Depends(json_body(ItemDocument))],
    session: WriteSessionDep,
    scope: CurrentAudit,
) -> ItemOut | JSONResponse:
    """200 with the item; 202 with the pending change when part of the document needs a
    second person (the rest is applied)."""
    result = await service.put_item(
        session, item_id=item_id, document=document, scope=scope, actor=_actor(principal)
    )
    if result.change is None:
        return result.item
    return JSONResponse(
        result.change.model_dump(mode="json"),
        status_code=202,
        headers={"Location": f"/v1/admin/registry-changes/{result.change.id}"},
    )


@admin.post(
    "/items/{item_id}/versions",
    response_model=ItemOut,
    responses=problems(
        NotSteward,
        UnknownItem,
        ItemRetired,
        IncompatibleVersion,
        CompatibilityNotJudged,
        InvalidSchema,
    ),
    dependencies=[Depends(audited("registry.item.version"))],
)
async def add_version(
    item_id: ItemId,
    principal: StewardDep,
    document: Annotated[VersionDocument, Depends(json_body(VersionDocument))],
    session: WriteSessionDep,
    scope: CurrentAudit,
) -> ItemOut:
    return await service.add_version(
        session, item_id=item_id, document=document, scope=scope, actor=_actor(principal)
    )


@admin.post(
    "/items/{item_id}/deprecate",
    response_model=ItemOut,
    responses=problems(NotSteward, UnknownItem, RegistryConflict),
    dependencies=[Depends(audited("registry.item.deprecate"))],
)
async def deprecate_item(
    item_id: ItemId,
    principal: StewardDep,
    session: WriteSessionDep,
    scope: CurrentAudit,
    clock: ClockDep,
) -> ItemOut:
    return await service.change_lifecycle(
        session,
        item_id=item_id,
        lifecycle="deprecated",
        scope=scope,
        actor=_actor(principal),
        clock=clock,
    )


@admin.post(
    "/items/{item_id}/retire",
    response_model=ItemOut,
    responses=problems(NotSteward, UnknownItem, RegistryConflict),
    dependencies=[Depends(audited("registry.item.retire"))],
)
async def retire_item(
    item_id: ItemId,
    principal: StewardDep,
    session: WriteSessionDep,
    scope: CurrentAudit,
    clock: ClockDep,
) -> ItemOut:
    return await service.change_lifecycle(
        session,
        item_id=item_id,
        lifecycle="retired",
        scope=scope,
        actor=_actor(principal),
        clock=clock,
    )


def _reader_of_changes(principal: Principal) -> None:
    """Pending changes name people: administrators, auditors and stewards read them."""
    if not (principal.administrator or principal.auditor or principal.stewards):
        raise Forbidden(f"{principal.name!r} has no role that reads registry changes")


@admin.get("/registry-changes", response_model=RegistryChangeList, responses=problems(Forbidden))
async def list_changes(
    principal: PrincipalDep,
    session: SessionDep,
    status: ChangeStatus | None = None,
    item: Annotated[str | None, Query(pattern=ITEM_ID_PATTERN, max_length=128)] = None,
) -> RegistryChangeList:
    _reader_of_changes(principal)
    return await service.list_changes(session, status=status, item=item)


@admin.get(
    "/registry-changes/{change_id}",
    response_model=RegistryChangeOut,
    responses=problems(Forbidden, RegistryChangeNotFound),
)
async def get_change(
    change_id: ChangeId, principal: PrincipalDep, session: SessionDep
) -> RegistryChangeOut:
    _reader_of_changes(principal)
    return await service.get_change(session, change_id)


@admin.post(
    "/registry-changes/{change_id}/approve",
    response_model=RegistryChangeOut,
    responses=_DECISION_PROBLEMS,
    dependencies=[Depends(audited("registry.change.approve"))],
)
async def approve_change(
    change_id: ChangeId,
    principal: AdministratorDep,
    body: Annotated[ApproveChangeIn, Depends(json_body(ApproveChangeIn))],
    session: WriteSessionDep,
    scope: CurrentAudit,
    clock: ClockDep,
) -> RegistryChangeOut:
    principal.require_person()
    return await service.decide_change(
        session,
        change_id=change_id,
        approve=True,
        decider=principal.name,
        reason=body.reason,
        scope=scope,
        clock=clock,
    )


@admin.post(
    "/registry-changes/{change_id}/refuse",
    response_model=RegistryChangeOut,
    responses=_DECISION_PROBLEMS,
    dependencies=[Depends(audited("registry.change.refuse"))],
)
async def refuse_change(
    change_id: ChangeId,
    principal: AdministratorDep,
    body: Annotated[RefuseChangeIn, Depends(json_body(RefuseChangeIn))],
    session: WriteSessionDep,
    scope: CurrentAudit,
    clock: ClockDep,
) -> RegistryChangeOut:
    principal.require_person()
    return await service.decide_change(
        session,
        change_id=change_id,
        approve=False,
        decider=principal.name,
        reason=body.reason,
        scope=scope,
        clock=clock,
    )
