"""Typed route dependencies on the running hub (onceonly.hub.runtime.Hub).

Routes and domain dependencies take what they need from here by type
(``settings: SettingsDep``, ``clock: ClockDep``); none of them reads ``app.state``.
Tests replace a part with ``app.dependency_overrides`` or run the app with another
:class:`~onceonly.hub.kit.clock.Clock`.
"""

from collections.abc import AsyncIterator
from typing import Annotated

import httpx
from fastapi import Depends
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from onceonly.hub.audit.checkpoints import Checkpointer
from onceonly.hub.audit.service import AuditLog
from onceonly.hub.auth.jti_register import JtiRegister
from onceonly.hub.config import Settings
from onceonly.hub.db import WRITE_OPTION
from onceonly.hub.events.delivery import Deliverer
from onceonly.hub.keys import HubKeys
from onceonly.hub.kit.clock import Clock
from onceonly.hub.kit.problems import Unavailable
from onceonly.hub.runtime import Hub, hub_of


async def _hub(connection: HTTPConnection) -> Hub:
    return hub_of(connection.app)


HubDep = Annotated[Hub, Depends(_hub)]


async def _settings(hub: HubDep) -> Settings:
    return hub.settings


async def _keys(hub: HubDep) -> HubKeys:
    return hub.keys


async def _clock(hub: HubDep) -> Clock:
    return hub.clock


async def _engine(hub: HubDep) -> AsyncEngine:
    return hub.engine


async def _sessions(hub: HubDep) -> async_sessionmaker[AsyncSession]:
    return hub.sessions


async def _read_sessions(hub: HubDep) -> async_sessionmaker[AsyncSession]:
    if hub.read_sessions is not hub.sessions:
        async with hub.read_sessions() as session:
            await _reach_replica(session)
    return hub.read_sessions


async def _reach_replica(session: AsyncSession) -> None:
    """A replica that does not answer is a 503 of its own, never a 500."""
    try:
        await session.connection()
    except SQLAlchemyError:
        raise Unavailable("the read replica for audit searches does not answer") from None


async def _http(hub: HubDep) -> httpx.AsyncClient:
    return hub.http


async def _jti_register(hub: HubDep) -> JtiRegister:
    return hub.jti_register


async def _audit_log(hub: HubDep) -> AuditLog:
    return hub.audit_log


async def _checkpointer(hub: HubDep) -> Checkpointer:
    return hub.checkpointer


async def _deliverer(hub: HubDep) -> Deliverer:
    return hub.deliverer


SettingsDep = Annotated[Settings, Depends(_settings)]
KeysDep = Annotated[HubKeys, Depends(_keys)]
ClockDep = Annotated[Clock, Depends(_clock)]
EngineDep = Annotated[AsyncEngine, Depends(_engine)]
# For services that open their own sessions (a transaction of their own per step).
SessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(_sessions)]
# Auditors' searches and exports: the read replica when one is configured.
ReadSessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(_read_sessions)]
HttpDep = Annotated[httpx.AsyncClient, Depends(_http)]
JtiRegisterDep = Annotated[JtiRegister, Depends(_jti_register)]
AuditLogDep = Annotated[AuditLog, Depends(_audit_log)]
CheckpointerDep = Annotated[Checkpointer, Depends(_checkpointer)]
DelivererDep = Annotated[Deliverer, Depends(_deliverer)]


async def _session(hub: HubDep) -> AsyncIterator[AsyncSession]:
    async with hub.sessions() as session:
        yield session
        await session.commit()


async def _write_session(hub: HubDep) -> AsyncIterator[AsyncSession]:
    async with hub.sessions() as session:
        await session.connection(execution_options={WRITE_OPTION: True})
        yield session
        await session.commit()


async def _read_session(hub: HubDep) -> AsyncIterator[AsyncSession]:
    async with hub.read_sessions() as session:
        if hub.read_sessions is not hub.sessions:
            await _reach_replica(session)
        yield session


# scope="function": the commit happens before the response is sent, never after.
SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]
# For routes that change state: the change and its audit entry commit together.
WriteSessionDep = Annotated[AsyncSession, Depends(_write_session, scope="function")]
# Reads only, possibly from a replica a moment behind the primary (read_database_url).
ReadSessionDep = Annotated[AsyncSession, Depends(_read_session, scope="function")]
