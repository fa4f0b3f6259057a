"""``onceonly adapter …``: serve, register, feed and check a department adapter.

The ``onceonly`` command (``onceonly.hub.cli``) calls `add_commands` and then
``args.func(args)``, which returns the exit status. Every command that calls the hub
takes ``--hub URL`` in place of the configuration's ``hub_url``, as the hub's own
commands do; ``import`` says what it is doing on standard error while it works, when
standard error is a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from ._check import CheckResult, check_at_start, run_checks
from ._config import AdapterConfig, load_config
from ._errors import ConfigError, ImportFailed, ImportReport, InvalidRequest, OnceonlyError
from ._hubkeys import HubDirectory
from ._keys import load_or_create_key, public_jwks
from ._provider import create_provider_app, open_and_close
from ._store import RecordStore, json_document
from .logs import ENVIRONMENT as LOG_JSON_ENVIRONMENT
from .logs import configure_logs, json_logs_wanted

__all__ = ["add_commands"]

Command = Callable[[argparse.Namespace], int]


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``adapter`` and its subcommands on the ``onceonly`` parser."""
    adapter = subparsers.add_parser("adapter", help="run and feed a department adapter")
    commands = adapter.add_subparsers(dest="adapter_command", required=True, metavar="COMMAND")

    serve = _command(
        commands,
        "serve",
        help_text="serve the department's records to the hub",
        func=_serve,
        hub=True,
    )
    serve.description = "Creates the client key on first start."
    serve.add_argument(
        "--log-json",
        action="store_true",
        help="log one JSON object a line (also ONCEONLY_ADAPTER_LOG_JSON=true)",
    )
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="processes answering on the one port (default 1); they share data_dir,"
        " whose store keeps the served-log and spent request tokens for all of them",
    )
    _command(
        commands,
        "jwks",
        help_text="print the public JWKS to register the client at the hub",
        func=_jwks,
    )

    load = _command(
        commands,
        "import",
        help_text="import records from a file, all or nothing",
        func=_import,
        hub=True,
    )
    load.add_argument("--item", required=True, help="data item id")
    source = load.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, help="CSV: subject + property columns")
    load.add_argument(
        "--no-announce",
        action="store_true",
        help="do not publish change events for these records (an initial load)",
    )
    source.add_argument("--jsonl", type=Path, help='JSON lines: {"subject", "record"}')

    put = _command(
        commands, "put", help_text="store one record, validated like an import", func=_put, hub=True
    )
    put.add_argument("--item", required=True, help="data item id")
    put.add_argument("--subject", required=True, help="whom the record is about")
    put.add_argument("--record", required=True, help="the record as a JSON object")

    check = _command(
        commands,
        "check",
        help_text="check the hub, the client key, each source and each schema",
        func=_check,
        hub=True,
    )
    check.description = "One line per check, ok or FAILED; exits 0 only if all pass."

    reconcile = _command(
        commands,
        "reconcile",
        help_text="compare what this adapter served and received with the hub's audit log",
        func=_reconcile,
        hub=True,
    )
    reconcile.description = "One line per difference; exits 0 only if the two sides agree."


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    help_text: str,
    func: Command,
    hub: bool = False,
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text)
    parser.add_argument("--config", required=True, type=Path, help="adapter TOML file")
    if hub:
        parser.add_argument("--hub", metavar="URL", help="the hub (default: hub_url of the file)")
    parser.set_defaults(func=_reporting_errors(func))
    return parser


def _config(args: argparse.Namespace) -> AdapterConfig:
    """The configuration file, with ``--hub`` (if given) as its hub."""
    config = load_config(args.config)
    hub = getattr(args, "hub", None)
    if not hub:
        return config
    try:
        return AdapterConfig.model_validate({**config.model_dump(), "hub_url": hub})
    except ValidationError as error:
        raise ConfigError(
            f"--hub {hub}: not an https:// URL (plain http:// only on loopback, or with"
            " allow_plain_http_hub = true in the file)"
        ) from error


def _working(line: str | None) -> None:
    """What a long command is doing, on one line of a terminal's stderr (None: done)."""
    if not (sys.stderr.isatty() and os.environ.get("TERM") != "dumb"):
        return
    sys.stderr.write("\r\x1b[K" + (line or ""))
    sys.stderr.flush()


def _reporting_errors(func: Command) -> Command:
    """Print an `OnceonlyError` as one line on stderr and exit 1, with no traceback."""

    @wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ImportFailed as error:
            _print_failures(error.report)
            print(f"error: {error.detail}", file=sys.stderr)
        except (OnceonlyError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
        return 1

    return run


# What a worker process (``--workers`` above 1) reads to build its application.
_WORKER_CONFIG = "ONCEONLY_ADAPTER_WORKER_CONFIG"
_WORKER_HUB = "ONCEONLY_ADAPTER_WORKER_HUB"


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from onceonly.adapters.serving import server_options

    config = _config(args)
    key = load_or_create_key(config.key_path)
    as_json = json_logs_wanted(args.log_json)
    configure_logs(as_json=as_json)
    app = None
    try:  # what checks the configuration before any worker starts
        _check_at_start(config)
        if args.workers == 1:
            app = create_provider_app(config)
        else:
            open_and_close(config)  # the supervisor of several workers serves nothing
    except ConfigError as error:
        raise ConfigError(f"{args.config}: {error.detail}") from error
    logging.getLogger("adapters.cli").info(
        "adapter %s: client key kid %s, %d worker(s)", config.department, key.kid, args.workers
    )
    # log_config=None: uvicorn keeps the handlers configure_logs gave its loggers
    if app is not None:
        settle_heap_for_serving()
        uvicorn.run(
            app,
            host=config.listen_host,
            port=config.listen_port,
            log_config=None,
            **server_options(head_timeout=config.head_timeout),
        )
        return 0
    os.environ[_WORKER_CONFIG] = str(Path(args.config).resolve())
    os.environ.pop(_WORKER_HUB, None)
    if getattr(args, "hub", None):
        os.environ[_WORKER_HUB] = args.hub
    if as_json:
        os.environ[LOG_JSON_ENVIRONMENT] = "true"
    uvicorn.run(
        "onceonly.adapters.cli:worker_app",
        factory=True,
        host=config.listen_host,
        port=config.listen_port,
        workers=args.workers,
        log_config=None,
        **server_options(head_timeout=config.head_timeout),
    )
    return 0


def _check_at_start(config: AdapterConfig) -> None:
    """Stop at a mistake in the configuration (`check_at_start`); log a warning for
    each system that cannot be reached now, and serve all the same (decision 0061);
    and one for a plain http:// hub off loopback (`AdapterConfig.hub_in_clear`)."""
    log = logging.getLogger("adapters.cli")
    if (risk := config.hub_in_clear) is not None:
        log.warning("%s", risk)

    async def check() -> list[str]:
        async with httpx.AsyncClient(timeout=5.0) as http:
            return await check_at_start(config, http=http)

    for warning in asyncio.run(check()):
        log.warning("%s; serving all the same, /readyz answers 503 while it stays away", warning)


def worker_app() -> Any:
    """The application of one ``onceonly adapter serve --workers N`` process (uvicorn
    imports it by name in each worker): the configuration ``serve`` checked, read again."""
    configure_logs(as_json=json_logs_wanted(False))
    config = load_config(Path(os.environ[_WORKER_CONFIG]))
    hub = os.environ.get(_WORKER_HUB)
    if hub:
        config = AdapterConfig.model_validate({**config.model_dump(), "hub_url": hub})
    app = create_provider_app(config)
    settle_heap_for_serving()
    return app


YOUNG_THRESHOLD = 10_000
"""Allocations between two young collections of a serving adapter (CPython's default: 700)."""


def settle_heap_for_serving() -> None:
    """Set the garbage collector of a process about to serve (decision 0035): collect
    once, freeze what is left (the imports and the app, which live as long as the
    process: full collections no longer walk them, and stop stalling requests), and
    make young collections rarer. The serving process's alone: ``serve`` calls it, and
    a program that embeds ``create_provider_app`` may."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def _check(args: argparse.Namespace) -> int:
    config = _config(args)

    async def checks() -> list[CheckResult]:
        async with httpx.AsyncClient(timeout=10.0) as http:
            return await run_checks(config, http=http)

    results = asyncio.run(checks())
    for result in results:
        print(result.line())
    return 0 if all(result.ok for result in results) else 1


def _reconcile(args: argparse.Namespace) -> int:
    from ._client import HubClient
    from ._reconcile import reconcile

    config = _config(args)
    if config.client_id is None:
        raise ConfigError(f"{args.config}: client_id is needed to ask the hub for its log")
    key = load_or_create_key(config.key_path)
    with (
        RecordStore(config.store_path) as store,
        HubClient(config.hub_url, client_id=config.client_id, key=key) as hub,
    ):
        differences = reconcile(
            hub=hub,
            served=store.served_entries(),
            receipts=store.receipts(),
            owned_items=set(config.items),
            department=config.department,
            key_pseudonym=store.trail_key.pseudonym,
        )
        served, receipts = len(store.served_entries()), len(store.receipts())
    for difference in differences:
        print(difference.line())
    verdict = "agree" if not differences else f"{len(differences)} difference(s)"
    print(f"{served} served, {receipts} receipts compared with the hub's log: {verdict}")
    return 0 if not differences else 1


def _jwks(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(json.dumps(public_jwks(load_or_create_key(config.key_path)), indent=2))
    return 0


def _import(args: argparse.Namespace) -> int:
    config = _config(args)
    source = args.csv if args.csv is not None else args.jsonl
    _working(f"reading the schema of {args.item} from {config.hub_url}")
    try:
        version, schema = _latest_schema(config, args.item)
        _working(f"validating and importing {source} (all or nothing)")
        with RecordStore(config.store_path) as store:
            if args.csv is not None:
                report = store.import_csv(
                    args.item, args.csv, schema, announce=not args.no_announce
                )
            else:
                report = store.import_jsonl(
                    args.item, args.jsonl, schema, announce=not args.no_announce
                )
    finally:
        _working(None)
    print(f"imported {report.imported} record(s) of {args.item} v{version}")
    return 0


def _put(args: argparse.Namespace) -> int:
    config = _config(args)
    try:
        record = json_document(args.record)
    except ValueError as error:
        raise InvalidRequest(f"--record is not JSON: {error}") from error
    if not isinstance(record, dict):
        raise InvalidRequest("--record must be a JSON object")
    version, schema = _latest_schema(config, args.item)
    with RecordStore(config.store_path) as store:
        store.import_records(args.item, [(args.subject, record)], schema)
    print(f"stored 1 record of {args.item} v{version}")
    return 0


def _latest_schema(config: AdapterConfig, item: str) -> tuple[int, dict[str, Any]]:
    """The item's latest version and schema, read from the hub's registry."""
    if item not in config.items:
        raise ConfigError(f"item {item!r} is not configured under [items] in the config file")
    if config.items[item].source != "store":
        source = config.items[item].source
        raise ConfigError(f"item {item!r} reads its {source} source: only store items are fed")

    async def read() -> tuple[int, dict[str, Any]]:
        async with httpx.AsyncClient(timeout=10.0) as http:
            directory = HubDirectory(config.hub_url, http=http)
            version = await directory.latest_version(item)
            return version, await directory.schema(item, version)

    return asyncio.run(read())


def _print_failures(report: ImportReport) -> None:
    for error in report.errors:
        print(f"row {error.row}: {error.message}", file=sys.stderr)
