"""The worlds of test_events.py (a hub on a copy of a saved catalogue, clients and a
grant; the hub's database) for every module here, and the production hub of the
registry's adapter URL tests."""

from tests.hub.events.test_events import copies, db, event_world  # noqa: F401
from tests.hub.registry.test_registry_adapter_urls import production_hub  # noqa: F401
