"""People routes: sign-in and one's own account (``/v1/people``), accounts
(``/v1/admin/people``, administrators)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from onceonly.hub.audit.dependencies import CurrentAudit, audited
from onceonly.hub.dependencies import (
    ClockDep,
    EngineDep,
    KeysDep,
    SessionDep,
    SessionsDep,
    SettingsDep,
    WriteSessionDep,
)
from onceonly.hub.kit.jsonbody import json_body
from onceonly.hub.kit.problems import problems
from onceonly.hub.people import service
from onceonly.hub.people.dependencies import AdministratorDep, PrincipalDep, bearer
from onceonly.hub.people.exceptions import (
    OidcSubjectTaken,
    PersonConflict,
    PersonNotFound,
    SignInFailed,
    SignInThrottled,
)
from onceonly.hub.people.principal import Forbidden
from onceonly.hub.people.schemas import (
    USERNAME_PATTERN,
    PasswordIn,
    PersonIn,
    PersonList,
    PersonOut,
    SessionOut,
    SignInIn,
    TotpConfirmIn,
    TotpEnrolIn,
    TotpEnrolment,
)

router = APIRouter(prefix="/v1/people", tags=["people"])
admin = APIRouter(prefix="/v1/admin/people", tags=["administration"])
Username = Annotated[str, Path(pattern=USERNAME_PATTERN)]
_NO_STORE = {"Cache-Control": "no-store"}
# Checked against the current password, under the sign-in throttle.
_PASSWORD_PROBLEMS = problems(Forbidden, PersonConflict, SignInFailed, SignInThrottled)


def _address(request: Request) -> str:
    """The caller's network address, as the sign-in throttle counts it."""
    return request.client.host if request.client else "unknown"


@router.post(
    "/sign-in",
    response_model=SessionOut,
    responses=problems(SignInFailed, SignInThrottled),
    dependencies=[Depends(audited("person.sign-in"))],
)
async def sign_in(
    request: Request,
    response: Response,
    body: Annotated[SignInIn, Depends(json_body(SignInIn))],
    settings: SettingsDep,
    keys: KeysDep,
    scope: CurrentAudit,
    clock: ClockDep,
    sessions: SessionsDep,
    engine: EngineDep,
) -> SessionOut:
    response.headers.update(_NO_STORE)
    return await service.sign_in(
        sessions,
        engine=engine,
        keys=keys,
        settings=settings,
        body=body,
        address=_address(request),
        scope=scope,
        clock=clock,
    )


@router.post("/sign-out", status_code=204, dependencies=[Depends(audited("person.sign-out"))])
async def sign_out(
    request: Request,
    principal: PrincipalDep,
    session: WriteSessionDep,
    scope: CurrentAudit,
    clock: ClockDep,
) -> Response:
    token = bearer(request)
    if token is not None and principal.person_id is not None:
        await service.sign_out(session, token=token, scope=scope, clock=clock)
    else:
        await scope.record_change(session)
    return Response(status_code=204)


@router.get("/me", response_model=PersonOut, responses=problems(Forbidden, PersonNotFound))
async def me(principal: PrincipalDep, session: SessionDep) -> PersonOut:
    return await service.me(session, principal)


# The password and enrolment routes check a password under the sign-in throttle, which
# counts each attempt in a transaction of its own before the check: they open their
# own sessions rather than hold a write transaction (and SQLite's lock) across it.
@router.post(
    "/me/password",
    status_code=204,
    responses=_PASSWORD_PROBLEMS,
    dependencies=[Depends(audited("person.password"))],
)
async def change_password(
    request: Request,
    principal: PrincipalDep,
    body: Annotated[PasswordIn, Depends(json_body(PasswordIn))],
    settings: SettingsDep,
    keys: KeysDep,
    scope: CurrentAudit,
    clock: ClockDep,
    sessions: SessionsDep,
    engine: EngineDep,
) -> Response:
    await service.change_password(
        sessions,
        engine=engine,
        keys=keys,
        settings=settings,
        principal=principal,
        token=bearer(request) or "",
        body=body,
        address=_address(request),
        scope=scope,
        clock=clock,
    )
    return Response(status_code=204)


@router.post(
    "/me/totp",
    response_model=TotpEnrolment,
    responses=_PASSWORD_PROBLEMS,
    dependencies=[Depends(audited("person.totp"))],
)
async def enrol_totp(
    request: Request,
    response: Response,
    principal: PrincipalDep,
    body: Annotated[TotpEnrolIn, Depends(json_body(TotpEnrolIn))],
    keys: KeysDep,
    settings: SettingsDep,
    scope: CurrentAudit,
    clock: ClockDep,
    sessions: SessionsDep,
    engine: EngineDep,
) -> TotpEnrolment:
    response.headers.update(_NO_STORE)
    return await service.enrol_totp(
        sessions,
        engine=engine,
        keys=keys,
        settings=settings,
        principal=principal,
        body=body,
        address=_address(request),
        scope=scope,
        clock=clock,
    )


@router.post(
    "/me/totp/confirm",
    response_model=PersonOut,
    responses=problems(Forbidden, PersonConflict),
    dependencies=[Depends(audited("person.totp-confirm"))],
)
async def confirm_totp(
    principal: PrincipalDep,
    body: Annotated[TotpConfirmIn, Depends(json_body(TotpConfirmIn))],
    session: WriteSessionDep,
    keys: KeysDep,
    scope: CurrentAudit,
    clock: ClockDep,
) -> PersonOut:
    return await service.confirm_totp(
        session, principal=principal, code=body.code, keys=keys, scope=scope, clock=clock
    )


@admin.get("", response_model=PersonList)
async def list_people(_: AdministratorDep, session: SessionDep) -> PersonList:
    return await service.list_people(session)


@admin.get("/{username}", response_model=PersonOut, responses=problems(PersonNotFound))
async def get_person(username: Username, _: AdministratorDep, session: SessionDep) -> PersonOut:
    return await service.get_person(session, username)


@admin.put(
    "/{username}",
    response_model=PersonOut,
    responses=problems(OidcSubjectTaken),  # the subject is another account's
    dependencies=[Depends(audited("person.put"))],
)
async def put_person(
    username: Username,
    principal: AdministratorDep,
    body: Annotated[PersonIn, Depends(json_body(PersonIn))],
    session: WriteSessionDep,
    settings: SettingsDep,
    scope: CurrentAudit,
    clock: ClockDep,
) -> PersonOut:
    return await service.put_person(
        session,
        principal=principal,
        username=username,
        body=body,
        settings=settings,
        scope=scope,
        clock=clock,
    )
