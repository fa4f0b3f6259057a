"""The purpose list: the codes a record query and an access request may name.

Read from ``Settings.purposes_file``, else ``config/purposes.toml`` in the current
directory, else the example list the package installs (``onceonly.config``). Each file is read once
per process (a changed list takes effect at restart, on every replica alike).
"""

import importlib.util
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from onceonly.hub.access.exceptions import PurposesUnavailable, UnknownPurpose
from onceonly.hub.config import Settings

PURPOSE_CODE = re.compile(r"^[a-z0-9][a-z0-9.-]{0,63}$")
DEFAULT_NAME = Path("config") / "purposes.toml"


@dataclass(frozen=True)
class Purpose:
    code: str
    title: str
    description: str


@dataclass(frozen=True)
class PurposeList:
    purposes: tuple[Purpose, ...]

    def get(self, code: str) -> Purpose:
        """The purpose with ``code``, or UnknownPurpose."""
        for purpose in self.purposes:
            if purpose.code == code:
                return purpose
        raise UnknownPurpose(f"{code!r} is not on the purpose list (GET /v1/purposes)")


def purposes_path(settings: Settings) -> Path:
    """Where the purpose list is read from (see the module's docstring)."""
    if settings.purposes_file is not None:
        if not settings.purposes_file.is_file():
            raise PurposesUnavailable(f"purposes_file {settings.purposes_file} does not exist")
        return settings.purposes_file
    for candidate in (Path.cwd() / DEFAULT_NAME, *_installed()):
        if candidate.is_file():
            return candidate
    raise PurposesUnavailable(
        f"no purpose list: set purposes_file, or provide {DEFAULT_NAME} (looked in"
        f" {Path.cwd()} and in the installed onceonly.config)"
    )


def _installed() -> list[Path]:
    """The example list the package installs (onceonly.config, a data package without
    ``__init__.py``: an editable install adds the checkout's folder)."""
    spec = importlib.util.find_spec("onceonly.config")
    locations = spec.submodule_search_locations if spec is not None else None
    return [Path(location) / DEFAULT_NAME.name for location in locations or []]


def purposes_for(settings: Settings) -> PurposeList:
    return load(purposes_path(settings).resolve())


@cache
def load(path: Path) -> PurposeList:
    """Parse and check a purpose list file (cached per path)."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise PurposesUnavailable(f"cannot read the purpose list {path}: {error}") from None
    entries = document.get("purpose")
    if not isinstance(entries, list) or not entries:
        raise PurposesUnavailable(f"{path} has no [[purpose]] entries")
    purposes = tuple(_purpose(path, entry) for entry in entries)
    codes = [p.code for p in purposes]
    if len(set(codes)) != len(codes):
        raise PurposesUnavailable(f"{path} names a purpose code twice")
    return PurposeList(purposes=purposes)


def _purpose(path: Path, entry: object) -> Purpose:
    if not isinstance(entry, dict):
        raise PurposesUnavailable(f"{path}: every [[purpose]] must be a table")
    code, title, description = (entry.get(k) for k in ("code", "title", "description"))
    if not isinstance(code, str) or not PURPOSE_CODE.match(code):
        raise PurposesUnavailable(f"{path}: purpose code {code!r} is not a valid code")
    if not isinstance(title, str) or not title or not isinstance(description, str):
        raise PurposesUnavailable(f"{path}: purpose {code!r} needs a title and a description")
    return Purpose(code=code, title=title, description=description)
