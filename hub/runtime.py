"""What a running hub holds: one typed object, built and torn down in one place.

The lifespan (onceonly.hub.app) enters :func:`running` and stores the :class:`Hub` it
yields on the application with :func:`install`; routes reach it only through the
typed dependencies of onceonly.hub.dependencies, middleware and the lifespan through
:func:`hub_of`. Nothing else reads ``app.state``.

The background workers start through one ``AsyncExitStack`` (onceonly.hub.kit.workers)
and stop in reverse order: the deliverer first (it writes audit entries and uses the
HTTP client), the audit writer last; then the HTTP client closes and the engines (the
requests', the group-commit writers' of decision 0056, a read replica's) are disposed.
Disposing closes only the connections back in the pool: a worker's ``stop``
lets a statement under way finish (onceonly.hub.kit.workers), for a task cancelled in
the middle of one has its connection invalidated, and with aiosqlite such a connection
could stay open until the garbage collector found it (tests/hub/test_runtime.py).
"""

import ssl
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial

import certifi
import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from onceonly.hub.access.exceptions import PurposesUnavailable
from onceonly.hub.access.purposes import purposes_for
from onceonly.hub.audit.checkpoints import Checkpointer, load_signer
from onceonly.hub.audit.service import AuditLog, SubjectSearches
from onceonly.hub.auth.jti_register import JtiRegister
from onceonly.hub.auth.service import TokenLimits
from onceonly.hub.config import Settings
from onceonly.hub.db import make_engine, session_factory, writers_engine
from onceonly.hub.events.delivery import Deliverer
from onceonly.hub.keys import HubKeys
from onceonly.hub.kit.base_urls import peer_rule
from onceonly.hub.kit.clock import Clock
from onceonly.hub.kit.keepalive import KeepAliveTransport
from onceonly.hub.kit.workers import start_all
from onceonly.hub.metrics import EntryMetrics, LabelGuard, Vocabulary
from onceonly.hub.people import oidc
from onceonly.hub.people import service as people_service
from onceonly.hub.registry import repository as registry_repository
from onceonly.hub.reports.rollup import Rollup

_HTTP_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=100)


@dataclass(frozen=True, kw_only=True)
class Hub:
    """Everything a request of this process may use; made once per process."""

    settings: Settings
    keys: HubKeys
    clock: Clock
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    # auditors' searches and exports: a read replica when one is configured, else sessions
    read_sessions: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient  # shared by the exchange, event delivery and sign-in
    audit_log: AuditLog  # the group-commit audit writer
    jti_register: JtiRegister  # single-use jtis, group commit (issue 4)
    token_limits: TokenLimits  # the OAuth endpoints' rate limits (decision 0051)
    subject_searches: SubjectSearches  # auditors' searches by subject (decision 0086)
    checkpointer: Checkpointer  # audit checkpoints (issue 6)
    deliverer: Deliverer
    metrics: EntryMetrics  # committed audit entries into metrics, with its label guard
    rollup: Rollup  # the efficiency report's roll-ups of the audit log (issue 14)
    oidc_provider: oidc.Provider | None  # None: no OpenID Connect provider configured
    citizen_oidc_provider: oidc.Provider | None  # None: no citizens' provider (decision 0032)


def outgoing_tls(settings: Settings) -> ssl.SSLContext | bool:
    """How the hub's outgoing connections (adapters, subscribers, the OpenID provider)
    check servers, and which certificate it shows those that ask for one: httpx's
    defaults, plus ``adapter_ca_file`` and the client certificate when configured."""
    if settings.adapter_ca_file is None and settings.adapter_client_cert_file is None:
        return True  # httpx's default verification (certifi, or SSL_CERT_FILE)
    context = ssl.create_default_context(cafile=certifi.where())
    if settings.adapter_ca_file is not None:
        context.load_verify_locations(cafile=settings.adapter_ca_file)
    if settings.adapter_client_cert_file is not None:
        context.load_cert_chain(
            settings.adapter_client_cert_file, keyfile=settings.adapter_client_key_file
        )
    return context


def install(app: Starlette, hub: Hub) -> None:
    app.state.hub = hub


def hub_of(app: Starlette) -> Hub:
    """The running hub of ``app`` (the one accessor of ``app.state``)."""
    hub: Hub = app.state.hub
    return hub


@asynccontextmanager
async def running(settings: Settings, *, keys: HubKeys | None, clock: Clock) -> AsyncIterator[Hub]:
    """A hub on a migrated database with its workers started; stopped on exit."""
    async with AsyncExitStack() as stack:
        engine = make_engine(settings.resolved_database_url)
        stack.push_async_callback(engine.dispose)
        writers = writers_engine(engine, settings.resolved_database_url)
        if writers is not engine:
            stack.push_async_callback(writers.dispose)
        keys = keys or HubKeys.load(
            settings.keys_dir,
            create=not settings.is_production,
            reload_interval=settings.signing_key_reload_interval,
            clock=clock,
        )
        await people_service.reseal_totp_secrets(engine, keys=keys)  # decision 0017
        tls = outgoing_tls(settings)
        http = await stack.enter_async_context(
            httpx.AsyncClient(
                # the hot path's owner calls: idle connections taken in O(1) (kit.keepalive);
                # adapter calls' connections judged by where they reached (decision 0071)
                transport=KeepAliveTransport(
                    verify=tls,
                    max_connections=200,
                    adapter_peers=peer_rule(
                        production=settings.is_production,
                        loopback_allowed=settings.adapters_on_loopback,
                    ),
                ),
                # for mounted transports only: with its own transport, httpx takes no proxy
                # from the environment (adapter calls are direct: decision 0071)
                limits=_HTTP_LIMITS,
                follow_redirects=False,
                verify=tls,
            )
        )
        read_engine = engine
        if settings.read_database_url is not None:
            read_engine = make_engine(settings.read_database_url)
            stack.push_async_callback(read_engine.dispose)
        hub = _assemble(
            settings,
            keys=keys,
            clock=clock,
            engine=engine,
            writers=writers,
            read_engine=read_engine,
            http=http,
        )
        await start_all(
            stack,
            [
                hub.metrics.guard,  # first: it reads the registry for metric labels
                hub.audit_log,
                hub.jti_register,
                hub.checkpointer,
                hub.rollup,
                hub.deliverer,
            ],
        )
        yield hub


def _assemble(
    settings: Settings,
    *,
    keys: HubKeys,
    clock: Clock,
    engine: AsyncEngine,
    writers: AsyncEngine,
    read_engine: AsyncEngine,
    http: httpx.AsyncClient,
) -> Hub:
    metrics = EntryMetrics(LabelGuard(partial(_metric_vocabulary, engine, settings)))
    # The group-commit writers on a pool of their own (decision 0056): a request that
    # holds a connection while it waits for their commit never starves them.
    audit_log = AuditLog(
        writers,
        batch_size=settings.audit_batch_size,
        probe_interval=settings.audit_probe_interval,
        clock=clock,
        on_committed=metrics.committed,
        unnamed_refusals_per_minute=settings.audit_unnamed_refusals_per_minute,
    )
    signer = load_signer(
        keys_dir=settings.keys_dir,
        origin=settings.resolved_audit_origin,
        create=not settings.is_production,
    )
    configured = bool(settings.oidc_issuer and settings.oidc_client_id)
    sessions = session_factory(engine)
    return Hub(
        settings=settings,
        keys=keys,
        clock=clock,
        engine=engine,
        sessions=sessions,
        # the same factory when there is no replica: routes tell the two apart by identity
        # (onceonly.hub.dependencies), and probe only a replica
        read_sessions=sessions if read_engine is engine else session_factory(read_engine),
        http=http,
        audit_log=audit_log,
        jti_register=JtiRegister(writers, clock=clock),
        token_limits=TokenLimits(settings),
        subject_searches=SubjectSearches(settings.audit_subject_searches_per_hour),
        checkpointer=Checkpointer(
            engine,
            signer=signer,
            interval=settings.checkpoint_interval,
            clock=clock,
            keys_dir=settings.keys_dir,
        ),
        deliverer=Deliverer(
            engine=engine,
            http=http,
            keys=keys,
            settings=settings,
            audit_log=audit_log,
            clock=clock,
        ),
        rollup=Rollup(engine, interval=settings.report_rollup_interval, clock=clock),
        metrics=metrics,
        oidc_provider=oidc.Provider.from_settings(settings, http=http) if configured else None,
        citizen_oidc_provider=(
            oidc.Provider.for_citizens(settings, http=http)
            if settings.citizen_oidc_issuer
            else None
        ),
    )


async def _metric_vocabulary(engine: AsyncEngine, settings: Settings) -> Vocabulary:
    """What metric labels may carry (onceonly.hub.metrics): registered items with their
    owners, departments, and the purpose list's codes."""
    async with session_factory(engine)() as session:
        owners = await registry_repository.item_owners(session)
        departments = await registry_repository.department_ids(session)
    try:
        purposes = frozenset(purpose.code for purpose in purposes_for(settings).purposes)
    except PurposesUnavailable:
        purposes = frozenset()
    return Vocabulary(owners=owners, departments=frozenset(departments), purposes=purposes)
