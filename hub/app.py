"""The hub application: wiring of settings, database, keys, audit writer and routes."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from onceonly.hub import __version__, errors, migrate, runtime
from onceonly.hub.access.endpoints import grants as grants_router
from onceonly.hub.access.endpoints import purposes as purposes_router
from onceonly.hub.access.endpoints import requests as access_requests_router
from onceonly.hub.access.endpoints import router as access_router
from onceonly.hub.audit.dependencies import AuditReaderDep, CurrentAudit
from onceonly.hub.audit.endpoints import router as audit_router
from onceonly.hub.auth.dependencies import CurrentCaller, TokenCaller
from onceonly.hub.auth.endpoints import router as auth_router
from onceonly.hub.citizen.endpoints import router as citizen_router
from onceonly.hub.config import Settings
from onceonly.hub.console import endpoints as console
from onceonly.hub.events.endpoints import admin as events_admin_router
from onceonly.hub.events.endpoints import router as events_router
from onceonly.hub.exchange.endpoints import ExchangeFastPath, audits_before_reading
from onceonly.hub.exchange.endpoints import router as exchange_router
from onceonly.hub.keys import HubKeys
from onceonly.hub.kit import heap, logs
from onceonly.hub.kit.clock import SYSTEM_CLOCK, Clock
from onceonly.hub.kit.jsonbody import LIMITS_STATE, JsonLimits
from onceonly.hub.middleware import RequestContextMiddleware
from onceonly.hub.ops import docs, http_contract, openapi
from onceonly.hub.ops.endpoints import router as ops_router
from onceonly.hub.people import credentials
from onceonly.hub.people.dependencies import (
    AdministratorDep,
    AuditorDep,
    BreakGlassDep,
    PrincipalDep,
    StewardDep,
)
from onceonly.hub.people.endpoints import admin as people_admin_router
from onceonly.hub.people.endpoints import router as people_router
from onceonly.hub.people.oidc_endpoints import router as people_oidc_router
from onceonly.hub.registry.endpoints import admin as registry_admin_router
from onceonly.hub.registry.endpoints import catalogue as catalogue_router
from onceonly.hub.reports.endpoints import router as reports_router

log = logging.getLogger("onceonly.hub")
_DESCRIPTION = (
    "The wire contracts are described in docs/protocol.md; every problem type in "
    "docs/problems.md. Each data item's record query, with the record's own schema per "
    "version, has a document of its own: `GET /v1/items/{item_id}/openapi.json`."
)


async def prepare_database(settings: Settings) -> None:
    """Migrate (development default) or check that an operator did (production)."""
    url = settings.resolved_database_url
    if settings.should_migrate:
        await asyncio.to_thread(migrate.upgrade, url)
    elif not await asyncio.to_thread(migrate.is_current, url):
        raise RuntimeError("the database schema is not current: run `onceonly migrate`")


def create_app(
    settings: Settings | None = None, *, keys: HubKeys | None = None, clock: Clock = SYSTEM_CLOCK
) -> FastAPI:
    """The hub as an ASGI app; ``clock`` is where it reads time (tests pass a ManualClock)."""
    settings = settings or Settings()
    credentials.configure_password_hashing(
        time_cost=settings.password_time_cost, memory_kib=settings.password_memory_kib
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        await prepare_database(settings)
        async with runtime.running(settings, keys=keys, clock=clock) as hub:
            runtime.install(app, hub)
            log.info("hub ready", extra={"issuer": settings.issuer, "mode": settings.mode})
            limits = JsonLimits(
                max_bytes=settings.max_body_bytes, max_depth=settings.max_json_depth
            )
            yield {LIMITS_STATE: limits}  # lifespan state: in every request's state

    app = FastAPI(
        title="Onceonly hub",
        version=__version__,
        summary="Collect a record once; share it under audited, purpose-bound permissions.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load from a CDN: ops.docs serves /docs and /redoc
        redoc_url=None,
        # no 307 from /path/ to /path: its Location is built from the Host field, which
        # a client chooses, and a client that follows it sends its body there
        redirect_slashes=False,
    )
    _install_openapi(app)
    # the hot path first: Starlette tries routes in order, and every exchange would
    # otherwise be matched against each console, ops and admin route before its own
    app.include_router(exchange_router)
    docs.install(app)
    errors.install(app)
    resources = http_contract.Resources(app)
    # innermost: a HEAD reaches routing as the GET it asks for (the record query's fast
    # path, a POST, never sees it)
    app.add_middleware(http_contract.HeadAsGet, resources=resources)
    # record queries are answered inside the request context, before the framework's
    # routing (onceonly.hub.exchange.endpoints); the route stays for its contract
    app.add_middleware(ExchangeFastPath)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        audited_first=audits_before_reading,
    )
    for router in (
        ops_router,
        auth_router,
        catalogue_router,
        registry_admin_router,
        access_router,
        access_requests_router,
        grants_router,
        purposes_router,
        audit_router,
        events_router,
        events_admin_router,
        citizen_router,
        reports_router,
        people_router,
        people_oidc_router,
        people_admin_router,
    ):
        app.include_router(router)
    http_contract.refuse_undeclared_queries(app)  # the API's routes, not the console's
    http_contract.answer_every_method(app, resources)
    # the web console at / (docs/console.md) last: no path of it is also an API path, and
    # FastAPI prepares an included router's routes for each app at the first request that
    # is tried against them (~60 ms of CPU for the console's pages), so a hub that only
    # answers the API (each test hub but the console's) never prepares them
    console.install(app)
    return app


_AUTHENTICATION = openapi.Authentication(
    machine=(CurrentCaller, TokenCaller),
    person=PrincipalDep,
    roles=(AdministratorDep, AuditorDep, StewardDep, BreakGlassDep),
    reader=AuditReaderDep,
    audited=CurrentAudit,
)


def _install_openapi(app: FastAPI) -> None:
    """``/openapi.json`` as onceonly.hub.ops.openapi completes it, built once."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi.hub_document(
                app, description=_DESCRIPTION, authentication=_AUTHENTICATION
            )
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def create_app_from_environment() -> FastAPI:
    """The ASGI factory for ``uvicorn --factory onceonly.hub.app:create_app_from_environment``
    (what ``onceonly serve`` runs in each worker): the process serves, so its garbage
    collector is settled for serving (onceonly.hub.kit.heap)."""
    settings = Settings()
    logs.configure(level=settings.log_level, as_json=settings.log_json)
    app = create_app(settings)
    heap.settle_for_serving()
    return app
