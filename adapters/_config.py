"""The adapter's TOML configuration file."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ._errors import ConfigError

__all__ = ["AdapterConfig", "ItemSource", "load_config"]

_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,127}$"


class ItemSource(BaseModel):
    """Where the adapter reads one data item's records (``[items."<id>"]``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Literal["store"] = "store"


class AdapterConfig(BaseModel):
    """A department adapter's settings, as read by `load_config`.

    Example::

        config = load_config("config/civil-registry.toml")
        store = RecordStore(config.store_path)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    department: str = Field(pattern=_ID_PATTERN)
    hub_url: str = Field(pattern=r"^https?://[^\s/]+(/\S*)?$")
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=9100, ge=0, le=65535)
    data_dir: Path
    client_id: str | None = Field(default=None, min_length=1, max_length=256)
    items: dict[str, ItemSource] = Field(default_factory=dict)

    @field_validator("hub_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("items")
    @classmethod
    def _check_item_ids(cls, value: dict[str, ItemSource]) -> dict[str, ItemSource]:
        for item in value:
            if not _valid_id(item):
                raise ValueError(f"{item!r} is not a valid item id")
        return value

    @property
    def key_path(self) -> Path:
        """The adapter client's private JWK (mode 0600)."""
        return self.data_dir / "client-key.jwk"

    @property
    def store_path(self) -> Path:
        """The SQLite file of the adapter-local record store and served-log."""
        return self.data_dir / "records.db"


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
    try:
        return AdapterConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"{path}: {_describe(error)}") from error


def _split_listen(value: object, *, path: Path) -> tuple[str, int]:
    host, _, port = str(value).rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{path}: listen: expected 'host:port', got {value!r}")
    return host.strip("[]"), int(port)


def _valid_id(value: str) -> bool:
    return re.fullmatch(_ID_PATTERN, value) is not None


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        problems.append(f"{field}: {item['msg']}")
    return "; ".join(problems)
