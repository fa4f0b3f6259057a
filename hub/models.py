"""Every table of the hub, imported in one place for Alembic and for tests."""

from onceonly.hub.access.models import AccessRequest, Grant
from onceonly.hub.audit.models import AuditEntry
from onceonly.hub.auth.models import RevokedToken, UsedJti
from onceonly.hub.events.models import Delivery, Event, Subscription
from onceonly.hub.people.models import Person, PersonRole, PersonSession, SignInFailure
from onceonly.hub.registry.models import Client, Department, FactsGeneration, Item, ItemVersion
from onceonly.hub.reports.models import (
    ReportCursor,
    ReportExchanges,
    ReportOwnerTimes,
    ReportRecords,
)

__all__ = [
    "AccessRequest",
    "AuditEntry",
    "Client",
    "Delivery",
    "Department",
    "Event",
    "FactsGeneration",
    "Grant",
    "Item",
    "ItemVersion",
    "Person",
    "PersonRole",
    "PersonSession",
    "ReportCursor",
    "ReportExchanges",
    "ReportOwnerTimes",
    "ReportRecords",
    "RevokedToken",
    "SignInFailure",
    "Subscription",
    "UsedJti",
]
