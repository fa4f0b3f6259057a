from typing import Annotated

from fastapi import Depends, Request

from onceonly.hub.events.delivery import Deliverer


async def _deliverer(request: Request) -> Deliverer:
    deliverer: Deliverer = request.app.state.deliverer
    return deliverer


DelivererDep = Annotated[Deliverer, Depends(_deliverer)]
