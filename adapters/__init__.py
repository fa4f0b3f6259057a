"""Onceonly adapters: what a department installs to fetch records through the hub
(`HubClient`) and to serve the records it owns (`create_provider_app`).

This package speaks only the wire contracts of docs/protocol.md; it never imports
``hub``.
"""

from ._client import AsyncHubClient, HubClient, Receipt, RecordResult
from ._config import AdapterConfig, ItemSettings, load_config
from ._dpop import DPoPKey
from ._errors import (
    AccessDenied,
    AuthenticationFailed,
    ConfigError,
    HubUnavailable,
    ImportFailed,
    ImportReport,
    InvalidRequest,
    NotFound,
    OnceonlyError,
    RowError,
    UpstreamError,
)
from ._events import DeliveredEvent, EventHandler
from ._keys import load_or_create_key, public_jwks
from ._provider import create_provider_app
from ._rest import RestItem, RestSource
from ._sources import (
    CallableSource,
    InvalidSourceRecord,
    PythonItem,
    RecordSource,
    SourceError,
    SourceUnavailable,
    StoreItem,
    StoreSource,
)
from ._sql import SqlItem, SqlSource
from ._store import ReceiptRow, RecordStore, ServedEntry

__all__ = [
    "AccessDenied",
    "AdapterConfig",
    "AsyncHubClient",
    "AuthenticationFailed",
    "CallableSource",
    "ConfigError",
    "DPoPKey",
    "DeliveredEvent",
    "EventHandler",
    "HubClient",
    "HubUnavailable",
    "ImportFailed",
    "ImportReport",
    "InvalidRequest",
    "InvalidSourceRecord",
    "ItemSettings",
    "NotFound",
    "OnceonlyError",
    "PythonItem",
    "Receipt",
    "ReceiptRow",
    "RecordResult",
    "RecordSource",
    "RecordStore",
    "RestItem",
    "RestSource",
    "RowError",
    "ServedEntry",
    "SourceError",
    "SourceUnavailable",
    "SqlItem",
    "SqlSource",
    "StoreItem",
    "StoreSource",
    "UpstreamError",
    "create_provider_app",
    "load_config",
    "load_or_create_key",
    "public_jwks",
]
