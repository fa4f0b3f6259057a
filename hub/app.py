"""The hub application: wiring of settings, database, keys, audit writer and routes."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from onceonly.hub import __version__, errors, migrate
from onceonly.hub.access.endpoints import grants as grants_router
from onceonly.hub.access.endpoints import purposes as purposes_router
from onceonly.hub.access.endpoints import requests as access_requests_router
from onceonly.hub.access.endpoints import router as access_router
from onceonly.hub.audit.checkpoints import Checkpointer, load_signer
from onceonly.hub.audit.endpoints import router as audit_router
from onceonly.hub.audit.service import AuditLog
from onceonly.hub.auth.endpoints import router as auth_router
from onceonly.hub.auth.jti_register import JtiRegister
from onceonly.hub.citizen.endpoints import router as citizen_router
from onceonly.hub.config import Settings
from onceonly.hub.db import make_engine, session_factory
from onceonly.hub.events.delivery import Deliverer
from onceonly.hub.events.endpoints import admin as events_admin_router
from onceonly.hub.events.endpoints import router as events_router
from onceonly.hub.exchange.endpoints import router as exchange_router
from onceonly.hub.keys import HubKeys
from onceonly.hub.kit import logs
from onceonly.hub.kit.asgi import RequestContextMiddleware
from onceonly.hub.ops.endpoints import router as ops_router
from onceonly.hub.people import credentials
from onceonly.hub.people import service as people_service
from onceonly.hub.people.endpoints import admin as people_admin_router
from onceonly.hub.people.endpoints import router as people_router
from onceonly.hub.people.oidc_endpoints import router as people_oidc_router
from onceonly.hub.registry.endpoints import admin as registry_admin_router
from onceonly.hub.registry.endpoints import catalogue as catalogue_router

log = logging.getLogger("onceonly.hub")


async def prepare_database(settings: Settings) -> None:
    """Migrate (development default) or check that an operator did (production)."""
    url = settings.resolved_database_url
    if settings.should_migrate:
        await asyncio.to_thread(migrate.upgrade, url)
    elif not await asyncio.to_thread(migrate.is_current, url):
        raise RuntimeError("the database schema is not current: run `onceonly migrate`")


def create_app(settings: Settings | None = None, *, keys: HubKeys | None = None) -> FastAPI:
    settings = settings or Settings()
    credentials.configure_password_hashing(
        time_cost=settings.password_time_cost, memory_kib=settings.password_memory_kib
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await prepare_database(settings)
        engine = make_engine(settings.resolved_database_url)
        audit_log = AuditLog(engine, batch_size=settings.audit_batch_size)
        app.state.settings = settings
        app.state.keys = keys or HubKeys.load(
            settings.keys_dir,
            create=not settings.is_production,
            reload_interval=settings.signing_key_reload_interval,
        )
        await people_service.reseal_totp_secrets(engine, keys=app.state.keys)  # decision 0017
        app.state.jti_register = JtiRegister(engine)  # single-use jtis, group commit (issue 4)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        app.state.audit_log = audit_log
        app.state.checkpointer = Checkpointer(  # audit checkpoints (issue 6)
            engine,
            signer=load_signer(
                keys_dir=settings.keys_dir,
                origin=settings.resolved_audit_origin,
                create=not settings.is_production,
            ),
            interval=settings.checkpoint_interval,
        )
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
        async with httpx.AsyncClient(limits=limits, follow_redirects=False) as http:
            app.state.http = http
            deliverer = Deliverer(
                engine=engine,
                http=http,
                keys=app.state.keys,
                settings=settings,
                audit_log=audit_log,
            )
            app.state.deliverer = deliverer
            await audit_log.start()
            await app.state.jti_register.start()
            await app.state.checkpointer.start()
            await deliverer.start()
            log.info("hub ready", extra={"issuer": settings.issuer, "mode": settings.mode})
            try:
                yield
            finally:
                await deliverer.stop()
                await app.state.checkpointer.stop()
                await app.state.jti_register.stop()
                await audit_log.stop()
                await engine.dispose()

    app = FastAPI(
        title="Onceonly hub",
        version=__version__,
        summary="Collect a record once; share it under audited, purpose-bound permissions.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    for router in (
        ops_router,
        auth_router,
        catalogue_router,
        exchange_router,
        registry_admin_router,
        access_router,
        access_requests_router,
        grants_router,
        purposes_router,
        audit_router,
        events_router,
        events_admin_router,
        citizen_router,
        people_router,
        people_oidc_router,
        people_admin_router,
    ):
        app.include_router(router)
    return app


def create_app_from_environment() -> FastAPI:
    """The ASGI factory for ``uvicorn --factory onceonly.hub.app:create_app_from_environment``."""
    settings = Settings()
    logs.configure(level=settings.log_level, as_json=settings.log_json)
    return create_app(settings)
