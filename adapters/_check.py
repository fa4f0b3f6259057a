"""``onceonly adapter check``: is everything the adapter depends on in order?

Each check is one line: the hub answers, the client key file is valid, each
configured source answers, and each item's local schema matches the registry's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from ._config import AdapterConfig, ItemSettings
from ._errors import ConfigError, NotFound, OnceonlyError
from ._hubkeys import HubDirectory
from ._keys import load_or_create_key
from ._sources import InvalidSourceRecord, ProbedSource, SourceMisconfigured, close_sources
from ._store import RecordStore

__all__ = ["CheckResult", "check_at_start", "first_difference", "run_checks"]

# How long start-up waits for one source's probe before it goes on, with a warning
_START_PROBE_SECONDS = 10.0


@dataclass(frozen=True)
class CheckResult:
    """One check: ``problem`` is ``None`` when it passed; ``note`` says what was seen."""

    name: str
    problem: str | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None

    def line(self) -> str:
        """``name: ok (note)`` or ``name: FAILED: problem``."""
        if self.problem is not None:
            return f"{self.name}: FAILED: {self.problem}"
        return f"{self.name}: ok" + (f" ({self.note})" if self.note else "")


async def run_checks(config: AdapterConfig, *, http: httpx.AsyncClient) -> list[CheckResult]:
    """Every check of ``config``, in the order a department would fix them."""
    directory = HubDirectory(config.hub_url, http=http)
    results = [await _check_hub(config, directory), _check_key(config)]
    with RecordStore(config.store_path) as store:
        for item, settings in config.items.items():
            results.append(await _check_source(item, settings, store=store))
            results.append(await _check_schema(item, settings, directory=directory))
    return results


async def check_at_start(config: AdapterConfig, *, http: httpx.AsyncClient) -> list[str]:
    """What ``onceonly adapter serve`` checks before it serves (decision 0061), without
    waiting on other systems: each source that can be probed is (an SQL query run with
    a made-up subject, its mapped columns present; a REST system's base URL), and each
    item is looked up in the hub's registry when the hub answers.

    :returns: warnings, one per system that could not be reached (the adapter serves
        anyway; ``/readyz`` answers 503 while they stay away).
    :raises ConfigError: a mistake: a query the database refuses (its syntax, a table
        or column it lacks, a permission), a mapped column the query does not return,
        an item the hub's registry does not know. A query the database cancelled (a
        statement or lock timeout), or one whose key the made-up subject does not fit
        even as NULL (a data error), is a warning: nothing in the file is wrong.
    """
    mistakes: list[str] = []
    warnings: list[str] = []
    with RecordStore(config.store_path) as store:
        sources = config.open_sources(store=store)
        try:
            for item, source in sources.items():
                if isinstance(source, ProbedSource):
                    await _probe_at_start(item, source, mistakes=mistakes, warnings=warnings)
        finally:
            await close_sources(sources.values())
    await _items_at_start(config, http=http, mistakes=mistakes, warnings=warnings)
    if mistakes:
        raise ConfigError("; ".join(mistakes))
    return warnings


async def _probe_at_start(
    item: str, source: ProbedSource, *, mistakes: list[str], warnings: list[str]
) -> None:
    where = f'items."{item}"'
    try:
        with anyio.fail_after(_START_PROBE_SECONDS):
            await source.probe(item)
    except (SourceMisconfigured, InvalidSourceRecord) as error:
        mistakes.append(f"{where}: {error.detail}")
    except TimeoutError:
        warnings.append(f"{where}: the source did not answer in {_START_PROBE_SECONDS:g} s")
    except OnceonlyError as error:
        warnings.append(f"{where}: {error.detail}")
    except Exception as error:  # a department's own source may raise anything
        warnings.append(f"{where}: the source's probe raised {type(error).__name__}")


async def _items_at_start(
    config: AdapterConfig, *, http: httpx.AsyncClient, mistakes: list[str], warnings: list[str]
) -> None:
    directory = HubDirectory(config.hub_url, http=http)
    try:
        await directory.issuer()
    except OnceonlyError as error:
        warnings.append(f"the hub {config.hub_url} cannot be reached ({error.detail})")
        return
    for item in config.items:
        try:
            await directory.latest_version(item)
        except NotFound:
            mistakes.append(f'items."{item}": the hub\'s registry has no such item')
        except OnceonlyError as error:
            warnings.append(f'items."{item}": not checked at the hub ({error.detail})')


async def _check_hub(config: AdapterConfig, directory: HubDirectory) -> CheckResult:
    name = f"hub {config.hub_url}"
    try:
        issuer = await directory.issuer()
    except OnceonlyError as error:
        return CheckResult(name, problem=error.detail)
    return CheckResult(name, note=f"issuer {issuer}")


def _check_key(config: AdapterConfig) -> CheckResult:
    # Whether the hub has registered this key shows at the first token request;
    # the SDK's token flow is its only client, so it is not repeated here.
    name = f"client key {config.key_path}"
    if not config.key_path.exists():
        return CheckResult(name, problem="missing; `onceonly adapter jwks` creates it")
    try:
        key = load_or_create_key(config.key_path)
    except (ConfigError, OSError) as error:
        return CheckResult(name, problem=str(error))
    client = config.client_id or "no client_id configured"
    return CheckResult(name, note=f"kid {key.kid}, {client}; registration at the hub not checked")


async def _check_source(item: str, settings: ItemSettings, *, store: RecordStore) -> CheckResult:
    name = f"source {item} ({settings.source})"
    try:
        source = settings.open(store=store)
    except ConfigError as error:
        return CheckResult(name, problem=error.detail)
    try:
        note = await source.probe(item) if isinstance(source, ProbedSource) else "loaded"
    except OnceonlyError as error:
        return CheckResult(name, problem=error.detail)
    except Exception as error:  # a department's own source may raise anything
        return CheckResult(name, problem=f"{type(error).__name__}: {error}")
    finally:
        await close_sources([source])
    return CheckResult(name, note=note)


async def _check_schema(
    item: str, settings: ItemSettings, *, directory: HubDirectory
) -> CheckResult:
    name = f"schema {item}"
    try:
        version = await directory.latest_version(item)
        registered = await directory.schema(item, version)
    except NotFound:
        return CheckResult(name, problem="the hub's registry has no such item")
    except OnceonlyError as error:
        return CheckResult(name, problem=error.detail)
    if settings.schema_file is None:
        return CheckResult(name, note=f"the hub has v{version}; no schema_file to compare")
    return _compare(name, settings.schema_file, registered, version=version)


def _compare(name: str, path: Path, registered: dict[str, Any], *, version: int) -> CheckResult:
    try:
        local = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return CheckResult(name, problem=f"cannot read {path}: {error}")
    difference = first_difference(local, registered)
    if difference is not None:
        problem = f"{path} differs from the hub's v{version} at {difference}"
        return CheckResult(name, problem=problem)
    return CheckResult(name, note=f"{path.name} matches the hub's v{version}")


def first_difference(local: object, registered: object, pointer: str = "") -> str | None:
    """The JSON pointer of the first place where two JSON documents differ, or ``None``.

    >>> first_difference({"required": ["a"]}, {"required": ["a", "b"]})
    '/required/1'
    """
    if isinstance(local, dict) and isinstance(registered, dict):
        for key in sorted(local.keys() | registered.keys()):
            escaped = key.replace("~", "~0").replace("/", "~1")
            if key not in local or key not in registered:
                return f"{pointer}/{escaped}"
            found = first_difference(local[key], registered[key], f"{pointer}/{escaped}")
            if found is not None:
                return found
        return None
    if isinstance(local, list) and isinstance(registered, list):
        for index in range(max(len(local), len(registered))):
            if index >= min(len(local), len(registered)):
                return f"{pointer}/{index}"
            found = first_difference(local[index], registered[index], f"{pointer}/{index}")
            if found is not None:
                return found
        return None
    same = type(local) is type(registered) and local == registered
    return None if same else pointer or "(the whole schema)"
