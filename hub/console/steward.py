"""The data stewards' pages of the console (docs/console.md, "Stewards' pages").

Every page calls the services the API's routes call, with the same principal, so the
rules live in one place: access requests, approvals and refusals in
``access.workflow``, grants and revocation in ``access.service``, items, versions and
their lifecycle in ``registry.service``. Every change opens its audit scope for the
API route's action before anything is judged (as ``audit.dependencies.audited``
does); a refusal is rolled back, audited, and shown as the page's error summary.
"""

import json
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from onceonly.hub.access import policy, workflow
from onceonly.hub.access import repository as access_repository
from onceonly.hub.access import service as access
from onceonly.hub.access.purposes import purposes_for
from onceonly.hub.access.schemas import (
    AccessRequestIn,
    ApproveIn,
    GrantOut,
    RefuseIn,
    RevokeIn,
)
from onceonly.hub.audit.request_scope import open_audit_scope
from onceonly.hub.audit.service import AuditScope
from onceonly.hub.console import pages, rendering, views
from onceonly.hub.console import steward_views as sv
from onceonly.hub.console.dependencies import FormDep, SignedInDep, Visit
from onceonly.hub.dependencies import HubDep, SessionDep, WriteSessionDep
from onceonly.hub.kit.jsonbody import describe_errors
from onceonly.hub.kit.problems import HubError, InvalidRequest
from onceonly.hub.people.principal import Forbidden, Principal
from onceonly.hub.registry import repository as registry_repository
from onceonly.hub.registry import schema_rules
from onceonly.hub.registry import service as registry
from onceonly.hub.registry.compat import MODE_CHECKS
from onceonly.hub.registry.exceptions import NotSteward, UnknownItem
from onceonly.hub.registry.schemas import ItemDocument, ItemOut, VersionDocument
from onceonly.hub.runtime import Hub

router = APIRouter(include_in_schema=False)
MODES = sorted(MODE_CHECKS)
_ROW_ID = re.compile(r"^[0-9a-f]{32}$")


def _is_row_id(candidate: str) -> bool:
    """A request's or grant's id, as the API's paths take it (RowId)."""
    return _ROW_ID.match(candidate) is not None


def _principal(visit: Visit) -> Principal:
    assert visit.principal is not None  # SignedInDep
    return visit.principal


def _render(
    request: Request, visit: Visit, template: str, *, status: int = 200, **context: Any
) -> Response:
    """A page of this group (rendering.render, with the words for states and dates)."""
    return rendering.render(
        request,
        visit,
        template,
        status=status,
        request_statuses=sv.REQUEST_STATUSES,
        grant_statuses=sv.GRANT_STATUSES,
        when=sv.when,
        field_prefix=sv.FIELD_PREFIX,
        **context,
    )


def _forbidden(request: Request, visit: Visit) -> Response:
    """The page of a signed-in person whose roles do not open it (the API's 403)."""
    return _render(request, visit, "steward/forbidden.html", status=403)


def _not_found(request: Request, visit: Visit) -> Response:
    return _render(request, visit, "not_found.html", status=404)


def _steward_of_some(visit: Visit) -> bool:
    """What the API's ``StewardDep`` asks: a steward of some department."""
    principal = _principal(visit)
    return principal.break_glass or bool(principal.stewards)


# The register page's example: what the registry asks of a schema, one personal field
SCHEMA_EXAMPLE = json.dumps(
    {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "required": ["registration_number"],
        "properties": {
            "registration_number": {"type": "string", "pattern": "^[A-Z]{3}[0-9]{3}$"},
            "owner_name": {"type": "string", "maxLength": 200, "x-personal": True},
        },
    },
    indent=2,
)


def _scope(request: Request, visit: Visit, action: str, hub: Hub) -> AuditScope:
    """The request's audit scope for ``action``, naming the signed-in person: the
    registry's and the access workflow's services note what changed, not who asked
    (the API's dependency notes the person; the console's changes had no person)."""
    scope = open_audit_scope(request, action, log=hub.audit_log)
    scope.note(person=_principal(visit).name)
    return scope


async def _refused(session: AsyncSession, scope: AuditScope, error: HubError) -> None:
    """Undo what the refused change did, and audit the refusal (the API's error
    handler does the same for problem answers)."""
    await session.rollback()
    if scope.owes_failure(error):
        await scope.record_failure(error)


def _named_item(item_id: str) -> str:
    """``item_id`` from a page's path if it is an item id at all, else refused as unknown
    before the registry notes it in the request's audit entry: the entry's item column
    holds 128 characters, and PostgreSQL refuses a longer text (docs/decisions/0044)."""
    if not views.is_item_id(item_id):
        raise UnknownItem("the address names no data item")
    return item_id


def _back(visit: Visit, location: str, *, done: str | None = None) -> Response:
    return pages.redirect(location, done=done, production=visit.production)


def _purpose_titles(hub: Hub) -> dict[str, str]:
    return {purpose.code: purpose.title for purpose in purposes_for(hub.settings).purposes}


async def _names(session: AsyncSession, hub: Hub, item_id: str, version: int | None) -> sv.Names:
    """The titles a request's or grant's page shows for its item, purpose and fields
    (those of ``version``, else of the latest one)."""
    purposes = _purpose_titles(hub)
    try:
        item = await registry.describe_item(session, item_id)
        shown = await registry.describe_version(session, item_id, version or item.latest_version)
    except HubError:
        return sv.Names(purposes=purposes)
    schema = shown.json_schema
    rows = views.field_rows(schema, fields=registry.version_fields(schema), personal=[])
    titles = {row.name: row.title for row in rows if row.title}
    return sv.Names(item=item.title, purposes=purposes, fields=titles)


# --- access requests: the inbox, the outbox and one request -------------------------


async def _box(request: Request, visit: Visit, session: AsyncSession, hub: Hub, box: str) -> Any:
    if not _steward_of_some(visit):
        return _forbidden(request, visit)
    query = workflow.RequestQuery(box="inbox" if box == "inbox" else "outbox")
    found = await workflow.list_requests(
        session, principal=_principal(visit), query=query, clock=hub.clock
    )
    return _render(
        request,
        visit,
        "steward/requests.html",
        box=box,
        requests=sv.waiting_first(found.requests),
        names=sv.Names(purposes=_purpose_titles(hub)),
    )


@router.get("/inbox")
async def inbox(request: Request, visit: SignedInDep, session: SessionDep, hub: HubDep) -> Response:
    response: Response = await _box(request, visit, session, hub, "inbox")
    return response


@router.get("/outbox")
async def outbox(
    request: Request, visit: SignedInDep, session: SessionDep, hub: HubDep
) -> Response:
    response: Response = await _box(request, visit, session, hub, "outbox")
    return response


def _may(check: Any, *args: Any, **kwargs: Any) -> bool:
    """Whether a policy check passes (to offer a form only to who may send it)."""
    try:
        check(*args, **kwargs)
    except Forbidden:
        return False
    return True


async def _request_page(
    request: Request,
    visit: Visit,
    session: AsyncSession,
    hub: Hub,
    request_id: str,
    *,
    status: int = 200,
    errors: list[views.FieldError] | None = None,
    detail: str = "",
    values: dict[str, str] | None = None,
    done: str = "",
) -> Response:
    principal = _principal(visit)
    try:
        found = await workflow.get_request(
            session, principal=principal, request_id=request_id, clock=hub.clock
        )
    except Forbidden:
        return _forbidden(request, visit)
    except HubError:
        return _not_found(request, visit)
    row = await access_repository.get_request(session, request_id)
    assert row is not None  # read just now
    pending = found.status == "pending"
    return _render(
        request,
        visit,
        "steward/request.html",
        status=status,
        errors=errors or [],
        detail=detail,
        values=values or {},
        found=found,
        decides=pending and _may(policy.require_decider, principal, row),
        withdraws=pending
        and _may(policy.require_consumer_steward, principal, found.consumer)
        and _may(policy.require_actor, principal),
        chosen=(values or {}).get("chosen", found.requested_fields),
        names=await _names(session, hub, found.item, found.version),
        notice=views.notice(sv.NOTICES, done, request.cookies) if not errors else None,
    )


@router.get("/requests/{request_id}")
async def request_page(
    request: Request,
    request_id: str,
    visit: SignedInDep,
    session: SessionDep,
    hub: HubDep,
    done: str = "",
) -> Response:
    if not _is_row_id(request_id):
        return _not_found(request, visit)
    return await _request_page(request, visit, session, hub, request_id, done=done)


async def _decision_refused(
    request: Request,
    visit: Visit,
    session: AsyncSession,
    hub: Hub,
    request_id: str,
    *,
    scope: AuditScope,
    error: HubError,
    field: str,
) -> Response:
    await _refused(session, scope, error)
    refused = sv.refusal(error, field=field)
    return await _request_page(
        request,
        visit,
        session,
        hub,
        request_id,
        status=error.status,
        errors=[refused.error],
        detail=refused.detail,
    )


@router.post("/requests/{request_id}/approve")
async def approve(
    request: Request,
    request_id: str,
    visit: SignedInDep,
    form: FormDep,
    session: WriteSessionDep,
    hub: HubDep,
) -> Response:
    scope = _scope(request, visit, "access.approve", hub)
    reason = form.get("reason", "").strip()
    asked = [value for name, value in form.items() if name.startswith(sv.FIELD_PREFIX)]
    errors = sv.approval_errors(fields=asked, reason=reason)
    if errors and _is_row_id(request_id):
        values: dict[str, Any] = {"approve-reason": reason, "chosen": asked}
        return await _request_page(
            request, visit, session, hub, request_id, status=400, errors=errors, values=values
        )
    try:
        await workflow.approve(
            session,
            principal=_principal(visit),
            request_id=request_id,
            # with errors, the id is no request's: the service refuses it, whatever the body
            body=ApproveIn() if errors else ApproveIn(fields=asked or None, reason=reason or None),
            settings=hub.settings,
            scope=scope,
            clock=hub.clock,
        )
    except HubError as error:
        return await _decision_refused(
            request, visit, session, hub, request_id, scope=scope, error=error, field="field-0"
        )
    return _back(visit, f"/requests/{request_id}", done="approved")


@router.post("/requests/{request_id}/refuse")
async def refuse(
    request: Request,
    request_id: str,
    visit: SignedInDep,
    form: FormDep,
    session: WriteSessionDep,
    hub: HubDep,
) -> Response:
    scope = _scope(request, visit, "access.refuse", hub)
    reason = form.get("reason", "").strip()
    errors = sv.reason_errors(reason, field="refuse-reason", required=True)
    if errors and _is_row_id(request_id):
        return await _request_page(
            request,
            visit,
            session,
            hub,
            request_id,
            status=400,
            errors=errors,
            values={"refuse-reason": reason},
        )
    try:
        await workflow.refuse(
            session,
            principal=_principal(visit),
            request_id=request_id,
            body=RefuseIn(reason="-" if errors else reason),  # errors: no request's id
            scope=scope,
            clock=hub.clock,
        )
    except HubError as error:
        return await _decision_refused(
            request,
            visit,
            session,
            hub,
            request_id,
            scope=scope,
            error=error,
            field="refuse-reason",
        )
    return _back(visit, f"/requests/{request_id}", done="refused")


@router.post("/requests/{request_id}/withdraw")
async def withdraw(
    request: Request,
    request_id: str,
    visit: SignedInDep,
    _: FormDep,
    session: WriteSessionDep,
    hub: HubDep,
) -> Response:
    scope = _scope(request, visit, "access.withdraw", hub)
    try:
        await workflow.withdraw(
            session,
            principal=_principal(visit),
            request_id=request_id,
            scope=scope,
            clock=hub.clock,
        )
    except HubError as error:
        return await _decision_refused(
            request, visit, session, hub, request_id, scope=scope, error=error, field="withdraw"
        )
    return _back(visit, f"/requests/{request_id}", done="withdrawn")


# --- asking for access: the consumer's side ---------------------------------------------


async def _item_and_fields(
    session: AsyncSession, item_id: str
) -> tuple[ItemOut, list[views.FieldRow]] | None:
    if not views.is_item_id(item_id):
        return None
    try:
        item = await registry.describe_item(session, item_id)
        latest = await registry.describe_version(session, item_id, item.latest_version)
    except UnknownItem:
        return None
    fields = registry.version_fields(latest.json_schema)
    rows = views.field_rows(latest.json_schema, fields=fields, personal=item.personal_fields)
    return item, rows


async def _ask_page(
    request: Request,
    visit: Visit,
    session: AsyncSession,
    hub: Hub,
    item_id: str,
    *,
    status: int = 200,
    errors: list[views.FieldError] | None = None,
    detail: str = "",
    values: sv.RequestForm | None = None,
    chosen: list[str] | None = None,
) -> Response:
    found = await _item_and_fields(session, item_id)
    if found is None:
        return _not_found(request, visit)
    item, rows = found
    consumers = sorted(_principal(visit).stewards - {item.owner})
    if not consumers:
        return _forbidden(request, visit)
    closed = sv.closed_to_requests(item)
    if closed is not None:  # the service's refusal, whatever was typed: no form to fill in
        refused = sv.refusal(closed, field="closed")
        status, errors, detail = closed.status, [refused.error], refused.detail
    return _render(
        request,
        visit,
        "steward/ask.html",
        status=status,
        errors=errors or [],
        detail=detail,
        item=item,
        rows=rows,
        consumers=consumers,
        purposes=purposes_for(hub.settings).purposes,
        names=sv.Names(fields={row.name: row.title for row in rows if row.title}),
        values=values or sv.RequestForm(consumer=consumers[0]),
        chosen=chosen if chosen is not None else [],
        closed=closed is not None,
    )


@router.get("/catalogue/{item_id}/request")
async def ask_page(
    request: Request, item_id: str, visit: SignedInDep, session: SessionDep, hub: HubDep
) -> Response:
    return await _ask_page(request, visit, session, hub, item_id)


@router.post("/catalogue/{item_id}/request")
async def ask(
    request: Request,
    item_id: str,
    visit: SignedInDep,
    form: FormDep,
    session: WriteSessionDep,
    hub: HubDep,
) -> Response:
    scope = _scope(request, visit, "access.request", hub)
    values = sv.RequestForm(
        consumer=form.get("consumer", ""),
        purpose=form.get("purpose", ""),
        purpose_text=form.get("purpose_text", "").strip(),
        legal_basis=form.get("legal_basis", "").strip(),
    )
    found = await _item_and_fields(session, item_id)
    offered = [row.name for row in found[1]] if found else []
    chosen = sv.chosen_fields(form, offered)
    errors = values.errors(
        fields=chosen,
        consumers=sorted(_principal(visit).stewards),
        purposes=[p.code for p in purposes_for(hub.settings).purposes],
    )
    closed = sv.closed_to_requests(found[0]) if found is not None else None
    if errors and found is not None and closed is not None:
        # a form from a page opened before the item closed: refused as the service would
        scope.note(item=item_id)
        await _refused(session, scope, closed)
        return await _ask_page(request, visit, session, hub, item_id)
    if errors and found is not None:
        return await _ask_page(
            request,
            visit,
            session,
            hub,
            item_id,
            status=400,
            errors=errors,
            values=values,
            chosen=chosen,
        )
    try:
        body = AccessRequestIn(
            consumer=values.consumer,
            item=item_id,
            purpose=values.purpose,
            purpose_text=values.purpose_text,
            legal_basis=values.legal_basis,
            fields=chosen,
        )
    except ValidationError as invalid:
        error: HubError = InvalidRequest(describe_errors(invalid))
        await _refused(session, scope, error)
        return _not_found(request, visit)
    try:
        made = await workflow.request_access(
            session,
            principal=_principal(visit),
            body=body,
            settings=hub.settings,
            scope=scope,
            clock=hub.clock,
        )
    except HubError as error:
        await _refused(session, scope, error)
        refused = sv.refusal(error, field="purpose")
        return await _ask_page(
            request,
            visit,
            session,
            hub,
            item_id,
            status=error.status,
            errors=[refused.error],
            detail=refused.detail,
            values=values,
            chosen=chosen,
        )
    return _back(visit, f"/requests/{made.id}", done="request-sent")


# --- grants ---------------------------------------------------------------------------


@router.get("/grants")
async def grants(
    request: Request, visit: SignedInDep, session: SessionDep, hub: HubDep
) -> Response:
    if not _steward_of_some(visit):
        return _forbidden(request, visit)
    found = await access.list_grants(session, principal=_principal(visit), clock=hub.clock)
    listed = sorted(found.grants, key=lambda g: (g.status != "active", g.item, g.consumer))
    names = sv.Names(purposes=_purpose_titles(hub))
    return _render(request, visit, "steward/grants.html", grants=listed, names=names)


async def _grant_and_revokes(
    session: AsyncSession, hub: Hub, visit: Visit, grant_id: str
) -> tuple[GrantOut, bool]:
    """The grant as the person may see it (Forbidden, or a HubError when there is none
    for them), and whether its page offers them revoking it."""
    principal = _principal(visit)
    grant = await access.get_grant(session, principal=principal, grant_id=grant_id, clock=hub.clock)
    revokes = (
        grant.status == "active"
        and _may(policy.require_actor, principal)
        and _may(
            policy.require_grant_party, principal, consumer=grant.consumer, owner=grant.owner or ""
        )
    )
    return grant, revokes


async def _offers_revoking(session: AsyncSession, hub: Hub, visit: Visit, grant_id: str) -> bool:
    try:
        return (await _grant_and_revokes(session, hub, visit, grant_id))[1]
    except HubError:
        return False


async def _grant_page(
    request: Request,
    visit: Visit,
    session: AsyncSession,
    hub: Hub,
    grant_id: str,
    *,
    status: int = 200,
    errors: list[views.FieldError] | None = None,
    detail: str = "",
    reason: str = "",
    done: str = "",
    confirming: bool = False,
) -> Response:
    """The grant's page, or with ``confirming`` the question whether to revoke it."""
    try:
        grant, revokes = await _grant_and_revokes(session, hub, visit, grant_id)
    except Forbidden:
        return _forbidden(request, visit)
    except HubError:
        return _not_found(request, visit)
    return _render(
        request,
        visit,
        "steward/grant.html",
        status=status,
        errors=errors or [],
        detail=detail,
        grant=grant,
        revokes=revokes,
        reason=reason,
        names=await _names(session, hub, grant.item, grant.version),
        notice=views.notice(sv.NOTICES, done, request.cookies) if not errors else None,
        confirming=confirming,
    )


@router.get("/grants/{grant_id}")
async def grant_page(
    request: Request,
    grant_id: str,
    visit: SignedInDep,
    session: SessionDep,
    hub: HubDep,
    done: str = "",
) -> Response:
    if not _is_row_id(grant_id):
        return _not_found(request, visit)
    return await _grant_page(request, visit, session, hub, grant_id, done=done)


@router.post("/grants/{grant_id}/revoke")
async def revoke(
    request: Request,
    grant_id: str,
    visit: SignedInDep,
    form: FormDep,
    session: WriteSessionDep,
    hub: HubDep,
) -> Response:
    """The grant page's form asks first (the reason shown, a "Yes" button); the
    question's form, with ``confirm=yes``, revokes. A steward the page offers no
    revoking to is answered by the service at once (refused and audited)."""
    scope = _scope(request, visit, "grant.revoke", hub)
    reason = form.get("reason", "").strip()
    errors = sv.reason_errors(reason, field="reason", required=True)
    if errors and _is_row_id(grant_id):
        return await _grant_page(
            request, visit, session, hub, grant_id, status=400, errors=errors, reason=reason
        )
    confirmed = form.get("confirm") == "yes"
    if (
        not confirmed
        and _is_row_id(grant_id)
        and await _offers_revoking(session, hub, visit, grant_id)
    ):
        return await _grant_page(
            request, visit, session, hub, grant_id, reason=reason, confirming=True
        )
    try:
        await access.revoke(
            session,
            principal=_principal(visit),
            grant_id=grant_id,
            body=RevokeIn(reason="-" if errors else reason),  # errors: no grant's id
            scope=scope,
            clock=hub.clock,
        )
    except HubError as error:
        await _refused(session, scope, error)
        refused = sv.refusal(error, field="reason")
        return await _grant_page(
            request,
            visit,
            session,
            hub,
            grant_id,
            status=error.status,
            errors=[refused.error],
            detail=refused.detail,
            reason=reason,
        )
    return _back(visit, f"/grants/{grant_id}", done="revoked")


def _actor(principal: Principal) -> registry.Actor:
    """As the registry's routes make it: the departments the principal stewards."""
    return registry.Actor(name=principal.name, departments=principal.steward_departments)


def _limits(hub: Hub) -> dict[str, int]:
    """The API's JSON limits, for a pasted schema (sv.schema_errors)."""
    return {"max_bytes": hub.settings.max_body_bytes, "max_depth": hub.settings.max_json_depth}


def _verdict_rows(schema: dict[str, Any]) -> list[views.FieldRow]:
    fields = registry.version_fields(schema)
    return views.field_rows(schema, fields=fields, personal=schema_rules.personal_fields(schema))


# --- registering an item, and a new version --------------------------------------------


def _register_page(
    request: Request,
    visit: Visit,
    *,
    status: int = 200,
    errors: list[views.FieldError] | None = None,
    detail: str = "",
    values: dict[str, str] | None = None,
    verdict: dict[str, Any] | None = None,
    checking: bool = False,
) -> Response:
    owners = sorted(_principal(visit).stewards)
    if not owners:
        return _forbidden(request, visit)
    return _render(
        request,
        visit,
        "steward/register.html",
        status=status,
        errors=errors or [],
        detail=detail,
        values=values or {"owner": owners[0], "compatibility": "BACKWARD"},
        owners=owners,
        modes=MODES,
        verdict=verdict,
        checking=checking,
        schema_example=SCHEMA_EXAMPLE,
    )


@router.get("/register")
async def register_page(request: Request, visit: SignedInDep) -> Response:
    return _register_page(request, visit)


@router.post("/register")
async def register(
    request: Request, visit: SignedInDep, form: FormDep, session: WriteSessionDep, hub: HubDep
) -> Response:
    """``action=check``: the registry's verdict on the document, nothing changes;
    ``action=register``: the API's ``PUT /v1/admin/items/{id}`` for a new item."""
    values = {name: form.get(name, "") for name in sv.REGISTER_FIELDS}
    registering = form.get("action") == "register"
    scope = _scope(request, visit, "registry.item.put", hub)
    document, errors = sv.item_document(form, **_limits(hub))
    if document is None:
        if registering:  # audited as the API audits a body it refuses
            wrong = ", ".join(error.field for error in errors)
            await _refused(session, scope, InvalidRequest(f"the form's {wrong} is not valid"))
        return _register_page(
            request, visit, status=400, values=values, errors=errors, checking=not registering
        )
    if not registering and (denied := await _check_refused(request, visit, session, hub, document)):
        return _register_page(request, visit, status=403, values=values, **denied)
    try:
        if await registry_repository.get_item(session, document.id) is not None:
            return _register_page(
                request, visit, status=409, values=values, errors=[sv.ITEM_EXISTS]
            )
        waiting = registry.judge_new_item(document)
        if registering:
            made = await registry.put_item(
                session,
                item_id=document.id,
                document=document,
                scope=scope,
                actor=_actor(_principal(visit)),
            )
            done = "item-registered-waiting" if made.change else "item-registered"
            return _back(visit, f"/catalogue/{document.id}", done=done)
    except HubError as error:
        if registering:
            await _refused(session, scope, error)
        refused = sv.refusal(error, field="schema", checking=not registering)
        return _register_page(
            request,
            visit,
            status=error.status,
            values=values,
            errors=[refused.error],
            detail=refused.detail,
            checking=not registering,
        )
    verdict = {"rows": _verdict_rows(document.json_schema), "waiting": sorted(waiting)}
    return _register_page(request, visit, values=values, verdict=verdict)


async def _check_refused(
    request: Request, visit: Visit, session: AsyncSession, hub: Hub, document: ItemDocument
) -> dict[str, Any] | None:
    """A check is for the owner department's stewards, as registering is (the registry's
    ``require_steward``): else the page's error and the hub's reason, the refusal
    audited as a refused route (a check is no ``registry.item.put``: it changes
    nothing)."""
    try:
        registry.require_steward(_actor(_principal(visit)), document.owner)
    except NotSteward as error:
        scope = _scope(request, visit, "route.refused", hub)
        scope.note(target="POST /register", department=document.owner, item=document.id)
        await _refused(session, scope, error)
        refused = sv.refusal(error, field="owner", checking=True)
        return {"errors": [refused.error], "detail": refused.detail, "checking": True}
    return None


async def _version_page(
    request: Request,
    visit: Visit,
    session: AsyncSession,
    item_id: str,
    *,
    status: int = 200,
    errors: list[views.FieldError] | None = None,
    detail: str = "",
    schema: str | None = None,
    verdict: dict[str, Any] | None = None,
    checking: bool = False,
) -> Response:
    found = await _item_and_fields(session, item_id)
    if found is None:
        return _not_found(request, visit)
    item = found[0]
    if not _principal(visit).stewards_department(item.owner):
        return _forbidden(request, visit)
    if schema is None:
        latest = await registry.describe_version(session, item_id, item.latest_version)
        schema = sv.schema_text(latest.json_schema)
    return _render(
        request,
        visit,
        "steward/version.html",
        status=status,
        errors=errors or [],
        detail=detail,
        item=item,
        schema=schema,
        verdict=verdict,
        checking=checking,
    )


@router.get("/catalogue/{item_id}/versions/new")
async def version_page(
    request: Request, item_id: str, visit: SignedInDep, session: SessionDep
) -> Response:
    return await _version_page(request, visit, session, item_id)


@router.post("/catalogue/{item_id}/versions/new")
async def add_version(
    request: Request,
    item_id: str,
    visit: SignedInDep,
    form: FormDep,
    session: WriteSessionDep,
    hub: HubDep,
) -> Response:
    """``action=check``: the registry's compatibility verdict, nothing changes;
    ``action=register``: the API's ``POST /v1/admin/items/{id}/versions``."""
    text = form.get("schema", "")
    registering = form.get("action") == "register"
    scope = _scope(request, visit, "registry.item.version", hub)
    actor = _actor(_principal(visit))
    schema, errors = sv.schema_errors(text, **_limits(hub))
    if errors:
        if registering:
            await _refused(session, scope, InvalidRequest("the schema is not valid JSON"))
        return await _version_page(
            request,
            visit,
            session,
            item_id,
            status=400,
            errors=errors,
            schema=text,
            checking=not registering,
        )
    try:
        document = VersionDocument.model_validate({"schema": schema})
        if registering:
            await registry.add_version(
                session, item_id=_named_item(item_id), document=document, scope=scope, actor=actor
            )
            return _back(visit, f"/catalogue/{item_id}", done="version-registered")
        number = await registry.judge_version(
            session, item_id=item_id, document=document, actor=actor
        )
    except (HubError, ValidationError) as failure:
        error = failure if isinstance(failure, HubError) else InvalidRequest(str(failure))
        if registering:
            await _refused(session, scope, error)
        refused = sv.refusal(error, field="schema", checking=not registering)
        return await _version_page(
            request,
            visit,
            session,
            item_id,
            status=error.status,
            errors=[refused.error],
            detail=refused.detail,
            schema=text,
            checking=not registering,
        )
    verdict = {"version": number, "rows": _verdict_rows(document.json_schema)}
    return await _version_page(request, visit, session, item_id, schema=text, verdict=verdict)


# --- deprecating and retiring ----------------------------------------------------------


async def _lifecycle_page(
    request: Request,
    visit: Visit,
    session: AsyncSession,
    item_id: str,
    *,
    status: int = 200,
    errors: list[views.FieldError] | None = None,
    detail: str = "",
    confirming: str = "",
) -> Response:
    """The lifecycle page, or with ``confirming`` (``deprecated``, ``retired``) the
    question whether to make the item so, with what it means."""
    found = await _item_and_fields(session, item_id)
    if found is None:
        return _not_found(request, visit)
    if not _principal(visit).stewards_department(found[0].owner):
        return _forbidden(request, visit)
    return _render(
        request,
        visit,
        "steward/lifecycle.html",
        status=status,
        item=found[0],
        errors=errors or [],
        detail=detail,
        confirming=confirming,
        offers=sv.offers_lifecycle,
    )


@router.get("/catalogue/{item_id}/lifecycle")
async def lifecycle_page(
    request: Request, item_id: str, visit: SignedInDep, session: SessionDep
) -> Response:
    return await _lifecycle_page(request, visit, session, item_id)


async def _asks_first(session: AsyncSession, visit: Visit, item_id: str, lifecycle: str) -> bool:
    """Whether a change the form did not confirm is asked about first: when the page
    offers it to the person. Anything else (another department's steward, a form from a
    stale page) goes to the registry at once, which refuses it or changes nothing."""
    found = await _item_and_fields(session, item_id)
    return (
        found is not None
        and _principal(visit).stewards_department(found[0].owner)
        and sv.offers_lifecycle(found[0].lifecycle, lifecycle)
    )


async def _change_lifecycle(
    request: Request,
    visit: Visit,
    session: AsyncSession,
    hub: Hub,
    item_id: str,
    *,
    lifecycle: str,
    confirmed: bool,
) -> Response:
    """The page's buttons ask first (what the change means, a "Yes" button); the
    question's form, with ``confirm=yes``, changes the item. The API takes no reason for
    a lifecycle change, so none is asked."""
    action = "deprecate" if lifecycle == "deprecated" else "retire"
    scope = _scope(request, visit, f"registry.item.{action}", hub)
    if not confirmed and await _asks_first(session, visit, item_id, lifecycle):
        return await _lifecycle_page(request, visit, session, item_id, confirming=lifecycle)
    try:
        await registry.change_lifecycle(
            session,
            item_id=_named_item(item_id),
            lifecycle=lifecycle,
            scope=scope,
            actor=_actor(_principal(visit)),
            clock=hub.clock,
        )
    except HubError as error:
        await _refused(session, scope, error)
        refused = sv.refusal(error, field=action)
        return await _lifecycle_page(
            request,
            visit,
            session,
            item_id,
            status=error.status,
            errors=[refused.error],
            detail=refused.detail,
        )
    return _back(visit, f"/catalogue/{item_id}", done=lifecycle)


@router.post("/catalogue/{item_id}/deprecate")
async def deprecate(
    request: Request,
    item_id: str,
    visit: SignedInDep,
    form: FormDep,
    session: WriteSessionDep,
    hub: HubDep,
) -> Response:
    confirmed = form.get("confirm") == "yes"
    return await _change_lifecycle(
        request, visit, session, hub, item_id, lifecycle="deprecated", confirmed=confirmed
    )


@router.post("/catalogue/{item_id}/retire")
async def retire(
    request: Request,
    item_id: str,
    visit: SignedInDep,
    form: FormDep,
    session: WriteSessionDep,
    hub: HubDep,
) -> Response:
    confirmed = form.get("confirm") == "yes"
    return await _change_lifecycle(
        request, visit, session, hub, item_id, lifecycle="retired", confirmed=confirmed
    )
