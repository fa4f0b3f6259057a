"""Single-use keys (a JWT's ``jti``, a login state): spending one twice must fail.

The hub's register is onceonly.hub.auth.jti_register.JtiRegister (shared by every
replica, group-committed); code that only spends keys depends on this protocol.
"""

from datetime import datetime
from typing import Protocol


class SingleUseRegister(Protocol):
    async def spend(self, key: str, *, expires_at: datetime) -> bool:
        """True if ``key`` was never spent before (and is spent now), False on a replay."""
        ...
