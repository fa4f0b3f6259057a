"""Every table of the hub, imported in one place for Alembic and for tests."""

from hub.access.models import AccessRequest, Grant
from hub.audit.models import AuditEntry
from hub.auth.models import RevokedToken, UsedJti
from hub.events.models import Delivery, Event, Subscription
from hub.people.models import Person, PersonRole, PersonSession, SignInFailure
from hub.registry.models import Client, Department, Item, ItemVersion

__all__ = [
    "AccessRequest",
    "AuditEntry",
    "Client",
    "Delivery",
    "Department",
    "Event",
    "Grant",
    "Item",
    "ItemVersion",
    "Person",
    "PersonRole",
    "PersonSession",
    "RevokedToken",
    "SignInFailure",
    "Subscription",
    "UsedJti",
]
