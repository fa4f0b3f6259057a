from typing import Annotated

from fastapi import Depends, Request

from onceonly.hub.exchange.service import ExchangeContext


async def _context(request: Request) -> ExchangeContext:
    state = request.app.state
    return ExchangeContext(
        settings=state.settings,
        keys=state.keys,
        http=state.http,
        engine=state.engine,
        jtis=state.jti_register,
    )


ExchangeContextDep = Annotated[ExchangeContext, Depends(_context)]
