"""The console's routes: thin, as every route of the hub (docs/console.md).

Each page reads who is visiting (``dependencies.VisitDep``), calls the services the
API's routes call, and renders a template (``pages.page``). POSTs answer with 303 to
a page (post/redirect/get). Nothing here is in ``/openapi.json``.
"""

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import cast
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Match

from onceonly.hub.audit.exceptions import AuditUnavailable
from onceonly.hub.audit.request_scope import open_audit_scope
from onceonly.hub.audit.service import AuditScope
from onceonly.hub.console import (
    admin,
    assets,
    auditor,
    citizen,
    cookies,
    oidc_sign_in,
    pages,
    rendering,
    steward,
    steward_views,
    views,
)
from onceonly.hub.console.dependencies import (
    FormDep,
    SignedInDep,
    VisitDep,
    current_visit,
    language_of,
)
from onceonly.hub.console.exceptions import FormRefused, SignInNeeded
from onceonly.hub.console.language import LANGUAGES
from onceonly.hub.db import WRITE_OPTION
from onceonly.hub.dependencies import HubDep, SessionDep, WriteSessionDep
from onceonly.hub.errors import failure_of
from onceonly.hub.kit.problems import HubError, InvalidRequest
from onceonly.hub.people import service as people
from onceonly.hub.people.exceptions import SignInFailed, SignInsBusy, SignInThrottled
from onceonly.hub.people.principal import Forbidden
from onceonly.hub.people.schemas import SignInIn
from onceonly.hub.registry import service as registry
from onceonly.hub.registry.exceptions import UnknownItem
from onceonly.hub.registry.schemas import ItemQuery
from onceonly.hub.runtime import Hub, hub_of

log = logging.getLogger("onceonly.console")
router = APIRouter(include_in_schema=False)
HOME = "/catalogue"
_ASSET_HEADERS = {"Cache-Control": "public, max-age=3600"}


_page = rendering.render


@router.get("/")
async def home(visit: SignedInDep) -> Response:
    return pages.redirect(HOME, production=visit.production)


# --- signing in and out --------------------------------------------------------------


@router.get("/sign-in")
async def sign_in_page(
    request: Request, visit: VisitDep, hub: HubDep, next: str = HOME
) -> Response:
    if visit.principal is not None:
        return pages.redirect(pages.local_path(next, default=HOME), production=visit.production)
    notice = "signed-out" if "signed_out" in request.query_params else ""
    if visit.ended:
        notice = "unsent" if "unsent" in request.query_params else "ended"
    return oidc_sign_in.sign_in_form(request, visit, hub, next=next, notice=notice)


async def _refused(scope: AuditScope, error: HubError) -> None:
    """Audit a refusal the console answers with a page (the API's error handler does
    the same for problem answers): no refusal goes unrecorded."""
    if scope.owes_failure(error):
        await scope.record_failure(error)


def _address(request: Request) -> str:
    """The caller's network address, as the sign-in throttle counts it (as the API does)."""
    return request.client.host if request.client else "unknown"


@router.post("/sign-in")
async def sign_in(request: Request, visit: VisitDep, form: FormDep, hub: HubDep) -> Response:
    values = {name: form.get(name, "") for name in ("username", "code", "next")}
    password = form.get("password", "")
    username, code = values["username"].strip(), values["code"].strip()
    errors = views.sign_in_errors(username=username, password=password, code=code)
    if errors:
        return oidc_sign_in.sign_in_form(
            request, visit, hub, status=400, errors=errors, values=values, next=values["next"]
        )
    scope = open_audit_scope(request, "person.sign-in", log=hub.audit_log)
    body = SignInIn(username=username, password=password, totp=code or None)
    try:
        signed = await people.sign_in(
            hub.sessions,
            engine=hub.engine,
            keys=hub.keys,
            settings=hub.settings,
            body=body,
            address=_address(request),
            scope=scope,
            clock=hub.clock,
        )
    except (SignInFailed, SignInThrottled) as error:
        await _refused(scope, error)
        if isinstance(error, SignInsBusy):  # the hub's load, not this person's failures
            message = views.N_("The hub is busy checking other sign-ins: try again in a moment")
        elif isinstance(error, SignInThrottled):
            message = views.N_("Too many failed sign-ins: wait a few minutes, then try again")
        else:
            message = views.N_("The username, password or one-time code is not right")
        errors = [views.FieldError("username", message)]
        return oidc_sign_in.sign_in_form(
            request,
            visit,
            hub,
            status=error.status,
            errors=errors,
            values=values,
            next=values["next"],
            headers=error.headers or {},
        )
    if visit.session_token is not None and visit.principal is not None:
        await _end_session(request, hub, visit.session_token, person=visit.principal.name)
    response = pages.redirect(
        pages.local_path(values["next"], default=HOME), production=visit.production
    )
    cookies.put_session(
        response, signed.token, lifetime=hub.settings.session_lifetime, production=visit.production
    )
    cookies.remove(response, cookies.PRE_SESSION, production=visit.production)
    return response


@router.post("/sign-out")
async def sign_out(
    request: Request, visit: SignedInDep, _: FormDep, session: WriteSessionDep, hub: HubDep
) -> Response:
    scope = open_audit_scope(request, "person.sign-out", log=hub.audit_log)
    assert visit.principal is not None
    assert visit.session_token is not None
    scope.note(person=visit.principal.name)
    await people.sign_out(session, token=visit.session_token, scope=scope, clock=hub.clock)
    response = pages.redirect("/sign-in?signed_out=1", production=visit.production)
    cookies.remove(response, cookies.SESSION, production=visit.production)
    cookies.remove(response, cookies.AUDIT_SEARCH, production=visit.production)
    return response


@router.get("/language/{code}")
async def choose_language(code: str, visit: VisitDep, next: str = HOME) -> Response:
    """The language switch: a link, so it works without a form; it only sets the
    visitor's preference (a cookie), and goes back to the page it was followed from."""
    response = pages.redirect(pages.local_path(next, default=HOME), production=visit.production)
    if code in LANGUAGES:
        cookies.put(
            response,
            cookies.LANGUAGE,
            code,
            max_age=cookies.LANGUAGE_SECONDS,
            production=visit.production,
            same_site="lax",
        )
    return response


@router.get("/account")
async def account(request: Request, visit: SignedInDep) -> Response:
    return _page(request, visit, "account.html")


# --- the catalogue -------------------------------------------------------------------


@router.get("/catalogue")
async def catalogue(
    request: Request,
    visit: SignedInDep,
    session: SessionDep,
    q: str = "",
    owner: str = "",
    tag: str = "",
) -> Response:
    search = views.CatalogueSearch(q=q.strip(), owner=owner, tag=tag)
    errors = search.errors()
    everything = (await registry.list_items(session)).items
    found = []
    if not errors:
        query = ItemQuery(q=search.q or None, owner=search.owner or None, tag=search.tag or None)
        found = (await registry.list_items(session, query)).items
    return _page(
        request,
        visit,
        "catalogue.html",
        status=400 if errors else 200,
        errors=errors,
        search=search,
        items=found,
        owners=sorted({item.owner for item in everything}),
        tags=sorted({tag for item in everything for tag in item.tags}),
        filtered=bool(search.q or search.owner or search.tag),
    )


@router.get("/catalogue/{item_id}")
async def item_page(
    request: Request, item_id: str, visit: SignedInDep, session: SessionDep, done: str = ""
) -> Response:
    if not views.is_item_id(item_id):
        return _page(request, visit, "not_found.html", status=404)
    try:
        item = await registry.describe_item(session, item_id)
        versions = await registry.list_versions(session, item_id)
        latest = await registry.describe_version(session, item_id, item.latest_version)
    except UnknownItem:
        return _page(request, visit, "not_found.html", status=404)
    summary = next(v for v in versions.versions if v.version == item.latest_version)
    rows = views.field_rows(
        latest.json_schema, fields=summary.fields, personal=summary.personal_fields
    )
    assert visit.principal is not None
    return _page(
        request,
        visit,
        "item.html",
        item=item,
        versions=sorted(versions.versions, key=lambda v: v.version, reverse=True),
        rows=rows,
        owned=visit.principal.stewards_department(item.owner),
        notice=views.notice(steward_views.NOTICES, done, request.cookies),
    )


# --- assets and the answers that are not pages -----------------------------------------


@router.get(assets.ASSETS_PATH + "/{name}")
async def asset(name: str, hub: HubDep) -> Response:
    if name not in assets.ASSETS:
        raise HTTPException(404, "no such console asset")
    headers = {**pages.security_headers(production=hub.settings.is_production), **_ASSET_HEADERS}
    return Response(assets.asset(name), media_type=assets.media_type(name), headers=headers)


async def _end_session(request: Request, hub: Hub, token: str, *, person: str) -> None:
    """End the sign-in the browser held before a new one (audited as a sign-out), so
    that a copy of the old cookie does not stay good."""
    scope = AuditScope(
        log=hub.audit_log, action="person.sign-out", request_id=request.state.request_id
    )
    scope.note(person=person)
    try:
        async with hub.sessions() as session:
            await session.connection(execution_options={WRITE_OPTION: True})
            await people.sign_out(session, token=token, scope=scope, clock=hub.clock)
            await session.commit()
    except Exception as error:  # its own scope: the request's error handler audits the sign-in's
        failure = failure_of(error)
        if scope.owes_failure(failure):
            with contextlib.suppress(HubError):  # the sign-in's answer says what went wrong
                await scope.record_failure(failure)
        raise


async def _to_sign_in(request: Request, exc: Exception) -> Response:
    """To the sign-in page, and back afterwards to the page the visitor was on: for a
    form posted after the sign-in ended, the page the form was on (its values are not
    kept: decision 0058), and the sign-in page says the form was not sent."""
    assert isinstance(exc, SignInNeeded)
    production = hub_of(request.app).settings.is_production
    posted = request.method not in ("GET", "HEAD")
    next_path = _page_of_form(request.app, request.url.path) if posted else exc.next_path
    target = pages.local_path(next_path, default=HOME)
    query = {"next": target} if target != HOME else {}
    query |= {"unsent": "1"} if posted else {}
    location = f"/sign-in?{urlencode(query)}" if query else "/sign-in"
    return pages.redirect(location, production=production)


def _page_of_form(app: Starlette, path: str) -> str:
    """The page a form posted to ``path`` was on: the nearest address at or above
    ``path`` that the app answers GET for (``POST /requests/{id}/approve`` was on
    ``/requests/{id}``, ``POST /catalogue/{item}/request`` on its own address)."""
    while path.startswith("/") and path != "/":
        scope = {"type": "http", "method": "GET", "path": path, "root_path": ""}
        if any(route.matches(scope)[0] is Match.FULL for route in app.routes):
            return path
        path = path.rsplit("/", 1)[0]
    return HOME


async def _form_refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FormRefused)
    hub = hub_of(request.app)
    production = hub.settings.is_production
    scope = open_audit_scope(request, "console.form-refused", log=hub.audit_log)
    template = getattr(request.scope.get("route"), "path", None)  # the route matched
    scope.note(target=template or request.url.path[:200])
    person = await _signed_in_person(request, hub)
    if person is not None:
        scope.note(person=person)
    refusal: HubError = (
        InvalidRequest("the form does not parse")
        if exc.status == 400
        else Forbidden("the form's CSRF token does not hold for this visitor")
    )
    try:  # every refusal is audited; one the log cannot take is still refused
        await scope.record_failure(refusal)
    except AuditUnavailable:
        log.error("a refused console form could not be audited")
    return pages.page(
        "form_refused.html",
        language=language_of(request, production=production),
        production=production,
        status=exc.status,
        visit=None,
        path=request.url.path,
        navigation=[],
    )


async def _signed_in_person(request: Request, hub: Hub) -> str | None:
    """Who is signed in in the browser that sent a refused form, if its sign-in cookie
    names a live session: read only, as every request checks it (the session is not
    extended or replaced). A database that cannot say leaves the refusal unnamed."""
    if not _from_the_hubs_own_pages(request, hub):
        return None
    token = cookies.read(request, cookies.SESSION, production=hub.settings.is_production)
    if token is None:
        return None
    try:
        async with hub.sessions() as session:
            principal = await people.principal_for_token(session, token, clock=hub.clock)
    except SQLAlchemyError:
        log.warning("the person of a refused console form could not be read")
        return None
    return principal.name if principal is not None and principal.person_id else None


def _from_the_hubs_own_pages(request: Request, hub: Hub) -> bool:
    """Whether a form was sent from the hub's own pages, as far as the browser says
    (Fetch Metadata's ``Sec-Fetch-Site``, else ``Origin``): a page on a sibling host
    (evil.example.gov) gets the session cookie too (SameSite counts the site, not the
    origin), and its forms, refused for their CSRF token, are not the signed-in
    person's acts: naming them would put entries in the person's name past the budget
    of refusals that name nobody (a review, helper-184; decision 0094). A request that
    says neither (an older browser, a script) is taken as the cookie says."""
    fetched_from = request.headers.get("sec-fetch-site")
    if fetched_from is not None:
        return fetched_from in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    issuer = urlsplit(hub.settings.issuer)
    return origin.lower() == f"{issuer.scheme}://{issuer.netloc}".lower()


_Handler = Callable[[Request, Exception], Awaitable[Response]]


def _not_a_page(api_answer: _Handler, *, api_roots: frozenset[str]) -> _Handler:
    """The answer to a 404 or 405: for a browser asking a console address for a page
    (``Accept: text/html``), the console's own page with its headers, in the visitor's
    language; for anything else, ``api_answer`` (the API's problem JSON, RFC 9457)."""

    async def answer(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        root = "/" + request.url.path.split("/", 2)[1]
        wants_page = "text/html" in request.headers.get("accept", "")
        if exc.status_code not in (404, 405) or not wants_page or root in api_roots:
            return await api_answer(request, exc)
        visit = await current_visit(request, hub_of(request.app))
        return rendering.render(
            request,
            visit,
            "not_found.html",
            status=exc.status_code,
            wrong_method=exc.status_code == 405,
            headers=dict(exc.headers or {}),
        )

    return answer


def _api_roots(app: FastAPI) -> frozenset[str]:
    """The first path segments of the routes that are not the console's (``/v1``,
    ``/oauth``, ``/.well-known``, ``/healthz``, ...): their 404s stay problem JSON."""
    roots = set()
    for context in iter_route_contexts(app.routes):
        module = getattr(getattr(context.route, "endpoint", None), "__module__", "")
        if not module.startswith(__package__ + "."):
            roots.add("/" + (context.path or "/").split("/", 2)[1])
    return frozenset(roots)


def _answering_head(group: APIRouter) -> APIRouter:
    """RFC 9110 §9.3.2: what answers GET answers HEAD (the server sends no body)."""
    for route in group.routes:
        if isinstance(route, APIRoute) and route.methods and "GET" in route.methods:
            route.methods.add("HEAD")
    return group


def install(app: FastAPI) -> None:
    """Serve the console at ``/`` (its pages and ``/assets``), and answer its refusals
    with pages and redirects."""
    for group in (router, oidc_sign_in.router, citizen.router, auditor.router, steward.router):
        app.include_router(_answering_head(group))
    admin.install(app, prepare=_answering_head)
    app.add_exception_handler(SignInNeeded, _to_sign_in)
    app.add_exception_handler(FormRefused, _form_refused)
    api_answer = cast(_Handler, app.exception_handlers[HTTPException])
    app.add_exception_handler(
        HTTPException, _not_a_page(api_answer, api_roots=_api_roots(app) - {"/"})
    )
