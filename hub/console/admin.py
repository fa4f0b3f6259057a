"""The administrators' pages (docs/console.md, "Administrators' pages"): departments,
clients, people and their roles, change-event dead letters, the signing keys.

Every page calls the service the API's route calls, so the rules are the API's:
``registry.service.put_department`` (https:// adapters in production),
``auth.service.set_client_standing``, ``people.service.put_person`` (roles kept apart,
no one changes their own account, a new credential ends the sessions),
``events.service.replay``. Only administrators pass (:data:`AdminVisit`,
:func:`administering`), as ``people.dependencies.AdministratorDep`` lets through; the
break-glass token is no console sign-in. Each change is audited under the API's action
and the person, in the same transaction as the change; each refusal too (a refused
page as ``route.refused`` with the route, as the API writes a refused read).
"""

import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from onceonly.adapters import subject_problem
from onceonly.hub import signing_keys
from onceonly.hub.audit.request_scope import open_audit_scope
from onceonly.hub.audit.service import AuditScope
from onceonly.hub.auth import service as clients
from onceonly.hub.auth.exceptions import ClientNotFound
from onceonly.hub.console import admin_views, pages, rendering
from onceonly.hub.console.admin_views import DepartmentForm, PersonForm
from onceonly.hub.console.dependencies import FormDep, SignedInDep, Visit
from onceonly.hub.console.views import N_, FieldError, role_names
from onceonly.hub.dependencies import DelivererDep, HubDep, SessionDep, WriteSessionDep
from onceonly.hub.events import service as events
from onceonly.hub.events.exceptions import DeliveryNotFound
from onceonly.hub.kit.problems import HubError, InvalidRequest
from onceonly.hub.people import service as people
from onceonly.hub.people.exceptions import OidcSubjectTaken, PersonNotFound
from onceonly.hub.people.principal import Forbidden, Principal
from onceonly.hub.people.schemas import PersonIn, PersonOut
from onceonly.hub.registry import service as registry
from onceonly.hub.registry.exceptions import UnknownDepartment
from onceonly.hub.registry.schemas import ClientOut, DepartmentIn, ItemQuery
from onceonly.hub.runtime import Hub

router = APIRouter(include_in_schema=False)
_render = rendering.render


class NotAdministrator(Exception):
    """A signed-in person without the administrator's role asked for an administrator's
    page or action: answered with a page (403), after the refusal is audited."""

    def __init__(self, visit: Visit) -> None:
        super().__init__(visit.principal.name if visit.principal else "")
        self.visit = visit


def _principal(visit: Visit) -> Principal:
    assert visit.principal is not None  # SignedInDep has sent anyone else to sign in
    return visit.principal


async def _refuse(scope: AuditScope, visit: Visit, error: Forbidden) -> NotAdministrator:
    await scope.record_failure(error)
    return NotAdministrator(visit)


async def _administrator_reading(request: Request, visit: SignedInDep, hub: HubDep) -> Visit:
    """A page that only reads: administrators only; a refusal is written as the API
    writes a refused read (``route.refused``, the route in ``target``, the person)."""
    principal = _principal(visit)
    try:
        principal.require_administrator()
    except Forbidden as error:
        scope = open_audit_scope(request, "route.refused", log=hub.audit_log)
        route = getattr(request.scope.get("route"), "path", request.url.path)
        scope.note(target=f"{request.method} {route}", person=principal.name)
        raise await _refuse(scope, visit, error) from None
    return visit


AdminVisit = Annotated[Visit, Depends(_administrator_reading)]


@dataclass(frozen=True)
class Administration:
    """An administrator's change under way: who, and its audit scope (the API's action)."""

    visit: Visit
    principal: Principal
    scope: AuditScope

    async def refused(self, session: AsyncSession, error: HubError) -> None:
        """Nothing of the change stays; the refusal is audited (as the API's handler does)."""
        await session.rollback()
        if self.scope.owes_failure(error):
            await self.scope.record_failure(error)


def administering(action: str) -> Callable[..., Coroutine[Any, Any, Administration]]:
    """A change by an administrator, audited as ``action`` (the API route's action):
    the scope opens before the role is checked, so that a refusal is audited too."""

    async def dependency(request: Request, visit: SignedInDep, hub: HubDep) -> Administration:
        principal = _principal(visit)
        scope = open_audit_scope(request, action, log=hub.audit_log)
        scope.note(person=principal.name)
        try:
            principal.require_administrator()
        except Forbidden as error:
            raise await _refuse(scope, visit, error) from None
        return Administration(visit=visit, principal=principal, scope=scope)

    return dependency


PutDepartment = Annotated[Administration, Depends(administering("registry.department.put"))]
DisableClient = Annotated[Administration, Depends(administering("registry.client.disable"))]
EnableClient = Annotated[Administration, Depends(administering("registry.client.enable"))]
PutPerson = Annotated[Administration, Depends(administering("person.put"))]
Replay = Annotated[Administration, Depends(administering("event.replay"))]


def _done(location: str, code: str, *, visit: Visit) -> Response:
    return pages.redirect(location, done=code, production=visit.production)


def _not_found(request: Request, visit: Visit) -> Response:
    return _render(request, visit, "not_found.html", status=404)


async def _form_refused(admin: Administration, session: AsyncSession) -> None:
    """A form the console cannot send on is audited as the API audits a body it refuses."""
    await admin.refused(session, InvalidRequest("the form is not complete or not valid"))


# --- departments -------------------------------------------------------------------


@router.get("/admin/departments")
async def departments(
    request: Request, visit: AdminVisit, session: SessionDep, done: str = ""
) -> Response:
    found = (await registry.list_departments(session)).departments
    return _render(
        request,
        visit,
        "admin/departments.html",
        departments=found,
        notice=admin_views.notice(done, request.cookies),
    )


def _department_form(
    request: Request,
    visit: Visit,
    form: DepartmentForm,
    *,
    new: bool,
    errors: list[FieldError] | None = None,
    status: int = 200,
) -> Response:
    return _render(
        request,
        visit,
        "admin/department_form.html",
        status=status,
        errors=errors or [],
        form=form,
        new=new,
        https_only=visit.production,
    )


@router.get("/admin/new-department")
async def new_department_page(request: Request, visit: AdminVisit) -> Response:
    return _department_form(request, visit, DepartmentForm(), new=True)


@router.post("/admin/new-department")
async def create_department(
    request: Request,
    admin: PutDepartment,
    form: FormDep,
    session: WriteSessionDep,
    hub: HubDep,
) -> Response:
    typed = DepartmentForm.of(form)
    body = typed.body()
    if not isinstance(body, list) and await _department_exists(session, typed.id):
        body = [FieldError("id", N_("A department with this id exists: edit it"))]
    return await _put_department(request, admin, session, typed, body, new=True, hub=hub)


async def _department_exists(session: AsyncSession, department_id: str) -> bool:
    try:
        await registry.get_department(session, department_id)
    except UnknownDepartment:
        return False
    return True


async def _put_department(
    request: Request,
    admin: Administration,
    session: AsyncSession,
    typed: DepartmentForm,
    body: DepartmentIn | list[FieldError],
    *,
    new: bool,
    hub: Hub,
) -> Response:
    """``PUT /v1/admin/departments/{id}``'s service, with the form's answer."""
    # The entry keeps the id as typed, even one that is no id, but none longer than an id
    # can be (64): PostgreSQL refuses it in the entry's department column (decision 0044).
    if len(typed.id) <= 64:
        admin.scope.note(department=typed.id)
    if isinstance(body, list):
        await _form_refused(admin, session)
        return _department_form(request, admin.visit, typed, new=new, errors=body, status=400)
    try:
        await registry.put_department(
            session,
            department_id=typed.id,
            body=body,
            scope=admin.scope,
            require_https=hub.settings.is_production,
            loopback_allowed=hub.settings.adapters_on_loopback,
        )
    except HubError as error:
        await admin.refused(session, error)
        errors = [admin_views.refusal(error, field="adapter_url")]
        return _department_form(
            request, admin.visit, typed, new=new, errors=errors, status=error.status
        )
    return _done(f"/admin/departments/{typed.id}", "department-saved", visit=admin.visit)


@router.get("/admin/departments/{department_id}")
async def department_page(
    request: Request, department_id: str, visit: AdminVisit, session: SessionDep, done: str = ""
) -> Response:
    if not admin_views.is_department_id(department_id):
        return _not_found(request, visit)
    try:
        department = await registry.get_department(session, department_id)
    except UnknownDepartment:
        return _not_found(request, visit)
    items = (await registry.list_items(session, ItemQuery(owner=department_id))).items
    owned_clients = (await clients.list_clients(session, department=department_id)).clients
    return _render(
        request,
        visit,
        "admin/department.html",
        department=department,
        items=items,
        clients=owned_clients,
        notice=admin_views.notice(done, request.cookies),
    )


@router.get("/admin/departments/{department_id}/edit")
async def edit_department_page(
    request: Request, department_id: str, visit: AdminVisit, session: SessionDep
) -> Response:
    if not admin_views.is_department_id(department_id):
        return _not_found(request, visit)
    try:
        department = await registry.get_department(session, department_id)
    except UnknownDepartment:
        return _not_found(request, visit)
    form = DepartmentForm(
        id=department.id,
        name=department.name,
        description=department.description,
        adapter_url=department.adapter_url or "",
    )
    return _department_form(request, visit, form, new=False)


@router.post("/admin/departments/{department_id}/edit")
async def edit_department(
    request: Request,
    department_id: str,
    admin: PutDepartment,
    form: FormDep,
    session: WriteSessionDep,
    hub: HubDep,
) -> Response:
    if not admin_views.is_department_id(department_id) or not await _department_exists(
        session, department_id
    ):
        await admin.refused(session, UnknownDepartment(f"no department {department_id!r}"))
        return _not_found(request, admin.visit)
    typed = DepartmentForm.of(form, department_id=department_id)
    return await _put_department(request, admin, session, typed, typed.body(), new=False, hub=hub)


# --- clients -----------------------------------------------------------------------


@router.get("/admin/clients")
async def client_list(
    request: Request, visit: AdminVisit, session: SessionDep, done: str = ""
) -> Response:
    found = (await clients.list_clients(session, department=None)).clients
    return _render(
        request,
        visit,
        "admin/clients.html",
        clients=found,
        notice=admin_views.notice(done, request.cookies),
    )


async def _client_or_none(session: AsyncSession, client_id: str) -> ClientOut | None:
    if not admin_views.is_client_id(client_id):
        return None
    try:
        return await clients.describe_client(session, client_id=client_id)
    except ClientNotFound:
        return None


@router.get("/admin/clients/{client_id}")
async def client_page(
    request: Request, client_id: str, visit: AdminVisit, session: SessionDep, done: str = ""
) -> Response:
    client = await _client_or_none(session, client_id)
    if client is None:
        return _not_found(request, visit)
    return _render(
        request,
        visit,
        "admin/client.html",
        client=client,
        errors=[],
        notice=admin_views.notice(done, request.cookies),
    )


@router.get("/admin/clients/{client_id}/disable")
async def disable_client_page(
    request: Request, client_id: str, visit: AdminVisit, session: SessionDep
) -> Response:
    client = await _client_or_none(session, client_id)
    if client is None:
        return _not_found(request, visit)
    return _render(request, visit, "admin/client_disable.html", client=client)


async def _set_standing(
    request: Request,
    admin: Administration,
    session: AsyncSession,
    hub: Hub,
    *,
    client_id: str,
    active: bool,
) -> Response:
    """``POST /v1/admin/clients/{id}/disable`` or ``/enable``'s service."""
    try:
        if not admin_views.is_client_id(client_id):
            raise ClientNotFound(f"there is no client {client_id!r}")
        await clients.set_client_standing(
            session,
            client_id=client_id,
            active=active,
            settings=hub.settings,
            scope=admin.scope,
            clock=hub.clock,
        )
    except ClientNotFound as error:
        await admin.refused(session, error)
        return _not_found(request, admin.visit)
    except HubError as error:
        await admin.refused(session, error)
        client = await clients.describe_client(session, client_id=client_id)
        errors = [admin_views.refusal(error, field="enable")]
        return _render(
            request,
            admin.visit,
            "admin/client.html",
            status=error.status,
            client=client,
            errors=errors,
            notice=None,
        )
    code = "client-enabled" if active else "client-disabled"
    return _done(f"/admin/clients/{client_id}", code, visit=admin.visit)


@router.post("/admin/clients/{client_id}/disable")
async def disable_client(
    request: Request,
    client_id: str,
    admin: DisableClient,
    _: FormDep,
    session: WriteSessionDep,
    hub: HubDep,
) -> Response:
    return await _set_standing(request, admin, session, hub, client_id=client_id, active=False)


@router.post("/admin/clients/{client_id}/enable")
async def enable_client(
    request: Request,
    client_id: str,
    admin: EnableClient,
    _: FormDep,
    session: WriteSessionDep,
    hub: HubDep,
) -> Response:
    return await _set_standing(request, admin, session, hub, client_id=client_id, active=True)


# --- people ------------------------------------------------------------------------


@router.get("/admin/people")
async def people_list(
    request: Request, visit: AdminVisit, session: SessionDep, done: str = ""
) -> Response:
    found = (await people.list_people(session)).people
    return _render(
        request,
        visit,
        "admin/people.html",
        people=found,
        notice=admin_views.notice(done, request.cookies),
    )


async def _person_or_none(session: AsyncSession, username: str) -> PersonOut | None:
    if not admin_views.is_username(username):
        return None
    try:
        return await people.get_person(session, username)
    except PersonNotFound:
        return None


def _own(visit: Visit, person: PersonOut) -> bool:
    return visit.account is not None and visit.account.username == person.username


@router.get("/admin/people/{username}")
async def person_page(
    request: Request, username: str, visit: AdminVisit, session: SessionDep, done: str = ""
) -> Response:
    person = await _person_or_none(session, username)
    if person is None:
        return _not_found(request, visit)
    return _render(
        request,
        visit,
        "admin/person.html",
        person=person,
        own=_own(visit, person),
        errors=[],
        notice=admin_views.notice(done, request.cookies),
    )


async def _person_form(
    request: Request,
    visit: Visit,
    session: AsyncSession,
    hub: Hub,
    form: PersonForm,
    *,
    new: bool,
    errors: list[FieldError] | None = None,
    status: int = 200,
) -> Response:
    departments = (await registry.list_departments(session)).departments
    return _render(
        request,
        visit,
        "admin/person_form.html",
        status=status,
        errors=errors or [],
        form=form,
        new=new,
        departments=departments,
        department_field=admin_views.DEPARTMENT_FIELD,
        oidc=hub.settings.oidc_issuer is not None,
    )


@router.get("/admin/new-person")
async def new_person_page(
    request: Request, visit: AdminVisit, session: SessionDep, hub: HubDep
) -> Response:
    return await _person_form(request, visit, session, hub, PersonForm(), new=True)


@router.get("/admin/people/{username}/edit")
async def edit_person_page(
    request: Request, username: str, visit: AdminVisit, session: SessionDep, hub: HubDep
) -> Response:
    person = await _person_or_none(session, username)
    if person is None:
        return _not_found(request, visit)
    role, departments = admin_views.current_role(role_names(person))
    form = PersonForm(
        username=person.username,
        display_name=person.display_name,
        role=role,
        departments=departments,
    )
    return await _person_form(request, visit, session, hub, form, new=False)


async def _put_person(
    request: Request,
    admin: Administration,
    session: AsyncSession,
    hub: Hub,
    *,
    form: PersonForm,
    body: PersonIn | list[FieldError],
    new: bool,
) -> Response:
    """``PUT /v1/admin/people/{username}``'s service, with the form's answer."""
    admin.scope.note(target=form.username)
    if isinstance(body, list):
        await _form_refused(admin, session)
        return await _person_form(
            request, admin.visit, session, hub, form, new=new, errors=body, status=400
        )
    try:
        await _apply(admin, session, hub, username=form.username, body=body)
    except HubError as error:
        await admin.refused(session, error)
        errors = [_person_refusal(error)]
        return await _person_form(
            request, admin.visit, session, hub, form, new=new, errors=errors, status=error.status
        )
    return _done(f"/admin/people/{form.username}", "person-saved", visit=admin.visit)


def _person_body(form: PersonForm, *, new: bool) -> PersonIn | list[FieldError]:
    """The form's body, or what to correct; a subject the identifier rule refuses (the
    API's, decision 0072) is named in words, not as a length."""
    body = form.body(new=new)
    if isinstance(body, list) and subject_problem(form.oidc_subject) is not None:
        spelling = FieldError("oidc_subject", _SUBJECT_SPELLING)
        body = [spelling if found.field == "oidc_subject" else found for found in body]
    return body


_SUBJECT_SPELLING = N_(
    "Enter the subject exactly as the provider sends it, without invisible characters (such"
    " as direction marks and zero-width spaces) or full-width forms"
)


def _person_refusal(error: HubError) -> FieldError:
    """The service's refusal of an account, next to the field it is about."""
    if isinstance(error, OidcSubjectTaken):  # never says which account holds it
        return FieldError(
            "oidc_subject", N_("This OpenID Connect subject is already linked to another account")
        )
    field = "departments" if error.slug == "unknown-department" else "username"
    return admin_views.refusal(error, field=field)


async def _apply(
    admin: Administration, session: AsyncSession, hub: Hub, *, username: str, body: PersonIn
) -> PersonOut:
    return await people.put_person(
        session,
        principal=admin.principal,
        username=username,
        body=body,
        settings=hub.settings,
        scope=admin.scope,
        clock=hub.clock,
    )


@router.post("/admin/new-person")
async def create_person(
    request: Request, admin: PutPerson, form: FormDep, session: WriteSessionDep, hub: HubDep
) -> Response:
    typed = PersonForm.of(form)
    body = _person_body(typed, new=True)
    if not isinstance(body, list) and await _person_or_none(session, typed.username):
        body = [FieldError("username", N_("An account with this username exists: edit it"))]
    return await _put_person(request, admin, session, hub, form=typed, body=body, new=True)


@router.post("/admin/people/{username}/edit")
async def edit_person(
    request: Request,
    username: str,
    admin: PutPerson,
    form: FormDep,
    session: WriteSessionDep,
    hub: HubDep,
) -> Response:
    if await _person_or_none(session, username) is None:
        await admin.refused(session, PersonNotFound(f"there is no account {username!r}"))
        return _not_found(request, admin.visit)
    typed = PersonForm.of(form, username=username)
    return await _put_person(
        request, admin, session, hub, form=typed, body=_person_body(typed, new=False), new=False
    )


@router.get("/admin/people/{username}/disable")
async def disable_person_page(
    request: Request, username: str, visit: AdminVisit, session: SessionDep
) -> Response:
    person = await _person_or_none(session, username)
    if person is None:
        return _not_found(request, visit)
    return _render(
        request, visit, "admin/person_disable.html", person=person, own=_own(visit, person)
    )


async def _set_status(
    request: Request,
    admin: Administration,
    session: AsyncSession,
    hub: Hub,
    *,
    username: str,
    status: str,
) -> Response:
    """An account disabled or enabled: ``PUT /v1/admin/people/{username}`` with only
    ``status`` (disabling ends its sessions: the service's rule)."""
    admin.scope.note(target=username)
    person = await _person_or_none(session, username)
    if person is None:
        await admin.refused(session, PersonNotFound(f"there is no account {username!r}"))
        return _not_found(request, admin.visit)
    body = PersonIn(status="disabled" if status == "disabled" else "active")
    try:
        await _apply(admin, session, hub, username=username, body=body)
    except HubError as error:
        await admin.refused(session, error)
        return _render(
            request,
            admin.visit,
            "admin/person.html",
            status=error.status,
            person=person,
            own=_own(admin.visit, person),
            errors=[admin_views.refusal(error, field="status")],
            notice=None,
        )
    code = "person-disabled" if status == "disabled" else "person-enabled"
    return _done(f"/admin/people/{username}", code, visit=admin.visit)


@router.post("/admin/people/{username}/disable")
async def disable_person(
    request: Request,
    username: str,
    admin: PutPerson,
    _: FormDep,
    session: WriteSessionDep,
    hub: HubDep,
) -> Response:
    return await _set_status(request, admin, session, hub, username=username, status="disabled")


@router.post("/admin/people/{username}/enable")
async def enable_person(
    request: Request,
    username: str,
    admin: PutPerson,
    _: FormDep,
    session: WriteSessionDep,
    hub: HubDep,
) -> Response:
    return await _set_status(request, admin, session, hub, username=username, status="active")


# --- change-event dead letters -------------------------------------------------------

DEAD_LETTERS_SHOWN = 100  # the API's default page (GET /v1/admin/events/deliveries)


@router.get("/admin/dead-letters")
async def dead_letters(
    request: Request, visit: AdminVisit, session: SessionDep, done: str = ""
) -> Response:
    found = (await events.deliveries(session, status="dead", limit=DEAD_LETTERS_SHOWN)).deliveries
    return _render(
        request,
        visit,
        "admin/dead_letters.html",
        deliveries=found,
        limit=DEAD_LETTERS_SHOWN,
        notice=admin_views.notice(done, request.cookies),
    )


@router.post("/admin/dead-letters/{delivery_id}/replay")
async def replay(
    request: Request,
    delivery_id: str,
    admin: Replay,
    _: FormDep,
    session: WriteSessionDep,
    hub: HubDep,
    deliverer: DelivererDep,
    tasks: BackgroundTasks,
) -> Response:
    """``POST /v1/admin/events/deliveries/{id}/replay``'s service; the deliverer is woken
    after the commit, as the API's route does."""
    try:
        if not admin_views.is_delivery_id(delivery_id):
            raise DeliveryNotFound(f"there is no dead letter {delivery_id!r}")
        await events.replay(session, delivery_id=delivery_id, scope=admin.scope, clock=hub.clock)
    except HubError as error:
        await admin.refused(session, error)
        return _not_found(request, admin.visit)
    tasks.add_task(deliverer.wake)
    return _done("/admin/dead-letters", "replayed", visit=admin.visit)


# --- signing keys ------------------------------------------------------------------


@router.get("/admin/signing-keys")
async def signing_key_schedule(request: Request, visit: AdminVisit, hub: HubDep) -> Response:
    """The keys of ``keys/signing/state.json`` (what ``onceonly keys show`` reads), read
    only: a rotation is ``onceonly keys rotate`` where the keys directory is. The key
    ring reads wall time (``SigningKeys``' clock), so this page does too."""
    entries = signing_keys.read_state(hub.keys.ring.directory)
    return _render(
        request,
        visit,
        "admin/signing_keys.html",
        keys=admin_views.key_schedule(entries, time.time()),
        key_states=admin_views.KEY_STATES,
        margin=signing_keys.retire_margin(hub.settings),
    )


# --- installing --------------------------------------------------------------------


async def _not_administrator(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NotAdministrator)
    return _render(request, exc.visit, "admin/forbidden.html", status=403)


def install(app: FastAPI, *, prepare: Callable[[APIRouter], APIRouter]) -> None:
    """Serve the administrators' pages (their router made ready by ``prepare``, as the
    console's other groups are), and answer other roles with a page (403)."""
    app.include_router(prepare(router))
    app.add_exception_handler(NotAdministrator, _not_administrator)
