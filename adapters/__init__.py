"""Onceonly adapters: what a department installs to fetch records through the hub
(`HubClient`) and to serve the records it owns (`create_provider_app`).

This package speaks only the wire contracts of docs/protocol.md; it never imports
``hub``. Its names load on first use (PEP 562): ``import onceonly.adapters.base64url``
or a single name costs only what that name needs, not the provider's web stack.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        RateLimited,
        RowError,
        UpstreamError,
    )
    from ._events import DeliveredEvent, EventHandler
    from ._keys import load_or_create_key, public_jwks
    from ._provider import create_provider_app
    from ._reqtoken import SUBJECT_RULE, subject_problem
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

# public name -> the private module that defines it
_WHERE = {
    "SUBJECT_RULE": "_reqtoken",
    "AccessDenied": "_errors",
    "AdapterConfig": "_config",
    "AsyncHubClient": "_client",
    "AuthenticationFailed": "_errors",
    "CallableSource": "_sources",
    "ConfigError": "_errors",
    "DPoPKey": "_dpop",
    "DeliveredEvent": "_events",
    "EventHandler": "_events",
    "HubClient": "_client",
    "HubUnavailable": "_errors",
    "ImportFailed": "_errors",
    "ImportReport": "_errors",
    "InvalidRequest": "_errors",
    "InvalidSourceRecord": "_sources",
    "ItemSettings": "_config",
    "NotFound": "_errors",
    "OnceonlyError": "_errors",
    "PythonItem": "_sources",
    "RateLimited": "_errors",
    "Receipt": "_client",
    "ReceiptRow": "_store",
    "RecordResult": "_client",
    "RecordSource": "_sources",
    "RecordStore": "_store",
    "RestItem": "_rest",
    "RestSource": "_rest",
    "RowError": "_errors",
    "ServedEntry": "_store",
    "SourceError": "_sources",
    "SourceUnavailable": "_sources",
    "SqlItem": "_sql",
    "SqlSource": "_sql",
    "StoreItem": "_sources",
    "StoreSource": "_sources",
    "UpstreamError": "_errors",
    "create_provider_app": "_provider",
    "load_config": "_config",
    "load_or_create_key": "_keys",
    "public_jwks": "_keys",
    "subject_problem": "_reqtoken",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "SUBJECT_RULE",
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
    "RateLimited",
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
    "subject_problem",
]
