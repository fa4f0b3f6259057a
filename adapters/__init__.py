"""Onceonly adapters: what a department installs to fetch records through the hub
(`HubClient`) and to serve the records it owns (`create_provider_app`).

This package speaks only the wire contracts of docs/protocol.md; it never imports
``hub``.
"""

from ._client import AsyncHubClient, HubClient, Receipt, RecordResult
from ._config import AdapterConfig, ItemSource, load_config
from ._errors import (
    AccessDenied,
    AuthenticationFailed,
    ConfigError,
    HubUnavailable,
    ImportFailed,
    InvalidRequest,
    NotFound,
    OnceonlyError,
    UpstreamError,
)
from ._keys import load_or_create_key, public_jwks
from ._provider import create_provider_app
from ._sources import CallableSource, RecordSource, StoreSource
from ._store import ImportReport, RecordStore, RowError, ServedEntry

__all__ = [
    "AccessDenied",
    "AdapterConfig",
    "AsyncHubClient",
    "AuthenticationFailed",
    "CallableSource",
    "ConfigError",
    "HubClient",
    "HubUnavailable",
    "ImportFailed",
    "ImportReport",
    "InvalidRequest",
    "ItemSource",
    "NotFound",
    "OnceonlyError",
    "Receipt",
    "RecordResult",
    "RecordSource",
    "RecordStore",
    "RowError",
    "ServedEntry",
    "StoreSource",
    "UpstreamError",
    "create_provider_app",
    "load_config",
    "load_or_create_key",
    "public_jwks",
]
