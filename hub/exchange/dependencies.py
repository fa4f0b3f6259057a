"""What the record query route takes from the running hub.

The exchange is the hub's hot path, and FastAPI solves every dependency of a route
on every request (each costs tens of microseconds of CPU), so the route reads the
process's parts from the request's app here, in a plain function, rather than
through one dependency per part."""

from starlette.requests import HTTPConnection

from onceonly.hub.exchange.service import ExchangeContext
from onceonly.hub.kit.clock import Clock
from onceonly.hub.runtime import hub_of


def exchange_context(connection: HTTPConnection) -> tuple[ExchangeContext, Clock]:
    """The exchange's context and the hub's clock, for a request to the running hub."""
    hub = hub_of(connection.app)
    context = ExchangeContext(
        settings=hub.settings,
        keys=hub.keys,
        http=hub.http,
        engine=hub.engine,
        jtis=hub.jti_register,
    )
    return context, hub.clock
