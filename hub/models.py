"""Every table of the hub, imported in one place for Alembic and for tests."""

from hub.access.models import Grant
from hub.audit.models import AuditEntry
from hub.auth.models import RevokedToken, UsedJti
from hub.events.models import Delivery, Event, Subscription
from hub.registry.models import Client, Department, Item, ItemVersion

__all__ = [
    "AuditEntry",
    "Client",
    "Delivery",
    "Department",
    "Event",
    "Grant",
    "Item",
    "ItemVersion",
    "RevokedToken",
    "Subscription",
    "UsedJti",
]
