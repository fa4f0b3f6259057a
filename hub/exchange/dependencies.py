from typing import Annotated

from fastapi import Depends

from onceonly.hub.dependencies import HubDep
from onceonly.hub.exchange.service import ExchangeContext


async def _context(hub: HubDep) -> ExchangeContext:
    return ExchangeContext(
        settings=hub.settings,
        keys=hub.keys,
        http=hub.http,
        engine=hub.engine,
        jtis=hub.jti_register,
    )


ExchangeContextDep = Annotated[ExchangeContext, Depends(_context)]
