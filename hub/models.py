"""Every table of the hub, imported in one place for Alembic and for tests."""

from hub.access.models import Grant
from hub.audit.models import AuditEntry
from hub.auth.models import UsedJti
from hub.registry.models import Client, Department, Item, ItemVersion

__all__ = ["AuditEntry", "Client", "Department", "Grant", "Item", "ItemVersion", "UsedJti"]
