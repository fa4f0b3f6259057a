"""The adapter's TOML configuration file.

Each ``[items."<id>"]`` table names its ``source`` ("store", the default, "sql",
"rest" or "python") and that source's settings; the settings models live beside
their sources (``_sources``, ``_sql``, ``_rest``) and are put together here.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from ._errors import ConfigError
from ._rest import RestItem
from ._sources import PythonItem, RecordSource, StoreItem
from ._sql import SqlItem
from ._store import RecordStore

__all__ = ["AdapterConfig", "ItemSettings", "load_config"]

_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,127}$"
_SOURCES = ("store", "sql", "rest", "python")


def _source_kind(value: object) -> str:
    source = value.get("source", "store") if isinstance(value, dict) else None
    return str(getattr(value, "source", source))


ItemSettings = Annotated[
    Annotated[StoreItem, Tag("store")]
    | Annotated[SqlItem, Tag("sql")]
    | Annotated[RestItem, Tag("rest")]
    | Annotated[PythonItem, Tag("python")],
    Discriminator(
        _source_kind,
        custom_error_type="invalid_source",
        custom_error_message=f"source must be one of {', '.join(map(repr, _SOURCES))}",
    ),
]
"""Where the adapter reads one data item's records (``[items."<id>"]``)."""


class AdapterConfig(BaseModel):
    """A department adapter's settings, as read by `load_config`.

    Example::

        config = load_config("config/civil-registry.toml")
        store = RecordStore(config.store_path)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    department: str = Field(pattern=_ID_PATTERN)
    # Before hub_url: its validator reads it
    allow_plain_http_hub: bool = False
    """Accept an ``http://`` hub_url that is not on loopback (a test bed behind its own
    encryption); request tokens, keys and records then cross the network in clear."""
    hub_url: str = Field(pattern=r"^https?://[^\s/]+(/\S*)?$")
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=9100, ge=0, le=65535)
    head_timeout: float = Field(default=10.0, gt=0, le=300)
    """Seconds a connection has to send a whole request head, from connecting (the
    first) or from its first byte (a later one); then 408 and closed
    (onceonly.adapters.serving.HEAD_TIMEOUT)."""
    data_dir: Path
    client_id: str | None = Field(default=None, min_length=1, max_length=256)
    items: dict[str, ItemSettings] = Field(default_factory=dict)

    @field_validator("hub_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str, info: ValidationInfo) -> str:
        if not (_over_tls_or_loopback(value) or info.data.get("allow_plain_http_hub")):
            raise ValueError(
                "the hub is reached over https:// (plain http:// only on loopback,"
                " or with allow_plain_http_hub = true)"
            )
        return value.rstrip("/")

    @field_validator("items")
    @classmethod
    def _check_item_ids(cls, value: dict[str, ItemSettings]) -> dict[str, ItemSettings]:
        for item in value:
            if not _valid_id(item):
                raise ValueError(f"{item!r} is not a valid item id")
        return value

    @property
    def hub_in_clear(self) -> str | None:
        """What ``allow_plain_http_hub`` risks with this ``hub_url``, or ``None`` when
        the hub is reached over https:// or on loopback: ``serve`` logs it as a
        WARNING at start, so that an exception meant for a test bed is not forgotten."""
        if _over_tls_or_loopback(self.hub_url):
            return None
        return (
            f"the hub {self.hub_url} is reached over plain http:// (allow_plain_http_hub):"
            " request tokens are checked against keys fetched in clear, so anyone on the"
            " path can forge them, and records cross the network unencrypted"
        )

    @property
    def key_path(self) -> Path:
        """The adapter client's private JWK (mode 0600)."""
        return self.data_dir / "client-key.jwk"

    @property
    def store_path(self) -> Path:
        """The SQLite file of the adapter-local record store and served-log."""
        return self.data_dir / "records.db"

    def open_sources(self, *, store: RecordStore) -> dict[str, RecordSource]:
        """A source per configured item, reading ``store`` where ``source = "store"``.

        Sources connect lazily, at their first fetch; close them with
        `close_sources`.

        :raises ConfigError: a source cannot be made (an environment variable is
            unset, a callable cannot be imported, a database driver is missing).
        """
        sources: dict[str, RecordSource] = {}
        for item, settings in self.items.items():
            try:
                sources[item] = settings.open(store=store)
            except ConfigError as error:
                raise ConfigError(f"items.{_quoted(item)}.{error.detail}") from error
        return sources


def load_config(path: str | Path) -> AdapterConfig:
    """Read and validate an adapter configuration file.

    ``listen`` (``host:port``) becomes ``listen_host`` and ``listen_port``; a relative
    ``data_dir`` resolves against the directory of the file.

    :raises ConfigError: the file is missing, not TOML, or a field is invalid; the
        message names the file and the field.
    """
    path = Path(path)
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: cannot read configuration: {error}") from error
    if "listen" in raw:
        raw["listen_host"], raw["listen_port"] = _split_listen(raw.pop("listen"), path=path)
    if isinstance(raw.get("data_dir"), str):
        raw["data_dir"] = (path.parent / raw["data_dir"]).resolve()
    _resolve_schema_files(raw.get("items"), base=path.parent)
    try:
        return AdapterConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"{path}: {_describe(error)}") from error


def _split_listen(value: object, *, path: Path) -> tuple[str, int]:
    host, _, port = str(value).rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{path}: listen: expected 'host:port', got {value!r}")
    return host.strip("[]"), int(port)


def _resolve_schema_files(items: object, *, base: Path) -> None:
    for settings in items.values() if isinstance(items, dict) else ():
        if isinstance(settings, dict) and isinstance(settings.get("schema_file"), str):
            settings["schema_file"] = (base / settings["schema_file"]).resolve()


def _over_tls_or_loopback(url: str) -> bool:
    """Whether ``url`` is ``https://``, or ``http://`` to this machine only."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _valid_id(value: str) -> bool:
    return re.fullmatch(_ID_PATTERN, value) is not None


def _describe(error: ValidationError) -> str:
    problems = []
    for problem in error.errors(include_url=False):
        field = _field_name(problem["loc"]) or "(top level)"
        message = problem["msg"].removeprefix("Value error, ")
        problems.append(f"{field}: {message}")
    return "; ".join(problems)


def _field_name(loc: tuple[int | str, ...]) -> str:
    """``items."person.identity".query``: TOML's spelling, without the union's tag."""
    parts = list(loc)
    if len(parts) >= 2 and parts[0] == "items":
        parts[1] = _quoted(str(parts[1]))
        if len(parts) >= 3 and parts[2] in _SOURCES:
            del parts[2]
    return ".".join(str(part) for part in parts)


def _quoted(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f'"{key}"'
