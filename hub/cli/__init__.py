"""The ``onceonly`` command: run the hub, administer it, run a department adapter, play the demo.

Every subcommand is a function ``(args) -> exit status``; ``main`` dispatches.
Administrative subcommands talk to a running hub over HTTP as the person signed in
with ``onceonly login`` (or with the break-glass administrator token), so that every
change goes through the same rules, role checks and audit log.
"""

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Command = Callable[[argparse.Namespace], int]


def _hub_url(args: argparse.Namespace) -> str:
    from onceonly.hub.config import Settings

    return str(args.hub or os.environ.get("ONCEONLY_HUB_URL") or Settings().issuer)


def _admin_call(args: argparse.Namespace, call: Callable[[Any], Any]) -> int:
    from onceonly.hub.cli.admin_client import AdminClient, AdminError
    from onceonly.hub.cli.session import credential
    from onceonly.hub.kit.jsonbody import UnsafeJson

    try:
        with AdminClient(_hub_url(args), credential(_hub_url(args))) as admin:
            result = call(admin)
    except AdminError as error:
        print(f"refused: {error}", file=sys.stderr)
        return 1
    except UnsafeJson as error:  # a file the command reads (catalogue import)
        print(error, file=sys.stderr)
        return 1
    except OSError as error:
        if error.filename is not None:  # a local file or directory, not the hub
            print(f"cannot read {error.filename}: {error.strerror}", file=sys.stderr)
            return 1
        print(f"cannot reach the hub at {_hub_url(args)}: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from onceonly.hub.cli.servers import server_options

    if "ONCEONLY_ISSUER" not in os.environ and not os.environ.get("ONCEONLY_CONFIG"):
        os.environ["ONCEONLY_ISSUER"] = f"http://{args.host}:{args.port}"
    uvicorn.run(
        "onceonly.hub.app:create_app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        proxy_headers=args.proxy_headers,
        **server_options(),
    )
    return 0


def _migrate(_: argparse.Namespace) -> int:
    from onceonly.hub import migrate
    from onceonly.hub.config import Settings

    settings = Settings()
    migrate.upgrade(settings.resolved_database_url)
    print(f"database is at the newest schema: {settings.resolved_database_url.split('@')[-1]}")
    return 0


def _keys_init(_: argparse.Namespace) -> int:
    """Create every key the hub loads at start-up (what exists is kept, never replaced)."""
    from onceonly.hub.audit.checkpoints import load_signer
    from onceonly.hub.config import Settings
    from onceonly.hub.keys import HubKeys

    settings = Settings()
    try:
        origin = settings.resolved_audit_origin  # production: ONCEONLY_AUDIT_ORIGIN
    except RuntimeError as error:
        print(f"no keys created: {error}", file=sys.stderr)
        return 1
    keys = HubKeys.load(settings.keys_dir, create=True)
    signer = load_signer(keys_dir=settings.keys_dir, origin=origin, create=True)
    print(f"keys are in {settings.keys_dir} (signing key id {keys.kid})")
    print(f"audit log {origin}; verifier key for auditors: {signer.verifier}")
    return 0


def _keys_rotate(args: argparse.Namespace) -> int:
    """Publish a new signing key now; it signs after the delay (docs/decisions/0010)."""
    import time

    from onceonly.hub import signing_keys
    from onceonly.hub.config import Settings
    from onceonly.hub.keys import HubKeys

    settings = Settings()
    HubKeys.load(settings.keys_dir, create=not settings.is_production)
    margin = signing_keys.retire_margin(settings)
    delay = margin if args.activate_after is None else args.activate_after
    now = int(time.time())
    entry = signing_keys.rotate(
        settings.keys_dir / "signing", activate_after=delay, retire_margin=margin, now=now
    )
    print(
        f"new signing key {entry.kid}: published now, signs from {entry.active_from} (+{delay} s)"
    )
    print(f"the key it replaces stays published until {entry.active_from + margin}")
    return 0


def _keys_rotate_derivation(_: argparse.Namespace) -> int:
    """A new derivation root, every TOTP secret re-sealed under it (docs/decisions/0017)."""
    import asyncio

    from onceonly.hub.app import prepare_database
    from onceonly.hub.config import Settings
    from onceonly.hub.db import make_engine
    from onceonly.hub.keys import HubKeys
    from onceonly.hub.people import service

    settings = Settings()

    async def rotate(keys: HubKeys) -> "service.Resealed":
        await prepare_database(settings)
        engine = make_engine(settings.resolved_database_url)
        try:
            return await service.rotate_derivation(engine, keys=keys)
        finally:
            await engine.dispose()

    try:
        keys = HubKeys.load(settings.keys_dir, create=not settings.is_production)
        resealed = asyncio.run(rotate(keys))
    except RuntimeError as error:  # a key file missing, or the schema not current (production)
        print(f"not rotated: {error}", file=sys.stderr)
        return 1
    print(f"new derivation root {resealed.root_id}; the one it replaced is kept as previous")
    print(f"{resealed.count} one-time-code secrets re-sealed under it")
    if resealed.unopened:
        print(
            "these people's one-time-code secrets do not open; reset them"
            f" (onceonly people put NAME --reset-totp): {', '.join(sorted(resealed.unopened))}",
            file=sys.stderr,
        )
    return 0


def _keys_show(_: argparse.Namespace) -> int:
    from onceonly.hub import signing_keys
    from onceonly.hub.config import Settings

    entries = signing_keys.read_state(Settings().keys_dir / "signing")
    print(json.dumps({"keys": [entry.__dict__ for entry in entries]}, indent=2))
    return 0


def _catalogue_import(args: argparse.Namespace) -> int:
    return _admin_call(args, lambda admin: admin.import_catalogue(Path(args.directory)))


def _department_put(args: argparse.Namespace) -> int:
    return _admin_call(
        args,
        lambda admin: admin.put_department(
            args.id, name=args.name, description=args.description, adapter_url=args.adapter_url
        ),
    )


def _client_put(args: argparse.Namespace) -> int:
    jwks = _read_json_file(args.jwks)
    return _admin_call(
        args, lambda admin: admin.put_client(args.client_id, department=args.department, jwks=jwks)
    )


def _client_disable(args: argparse.Namespace) -> int:
    return _admin_call(args, lambda admin: admin.disable_client(args.client_id))


def _client_enable(args: argparse.Namespace) -> int:
    return _admin_call(
        args, lambda admin: admin.call("POST", f"/v1/admin/clients/{args.client_id}/enable")
    )


def _grant_create(args: argparse.Namespace) -> int:
    fields = args.fields.split(",") if args.fields else None
    return _admin_call(
        args,
        lambda admin: admin.create_grant(
            consumer=args.consumer,
            item=args.item,
            purpose=args.purpose,
            legal_basis=args.legal_basis,
            fields=fields,
            valid_until=args.valid_until,
        ),
    )


def _grant_list(args: argparse.Namespace) -> int:
    return _admin_call(args, lambda admin: admin.list_grants(consumer=args.consumer))


def _grant_revoke(args: argparse.Namespace) -> int:
    return _admin_call(args, lambda admin: admin.revoke_grant(args.grant_id))


def _read_json_file(name: str) -> Any:
    from onceonly.hub.cli.admin_client import read_json_file

    try:
        return read_json_file(Path(name))
    except OSError as error:
        raise SystemExit(f"cannot read {name}: {error.strerror}") from None
    except ValueError as error:  # not JSON, or nested too deep: one line, no traceback
        raise SystemExit(str(error)) from None


def _items_register(args: argparse.Namespace) -> int:
    document = _read_json_file(args.file)
    return _admin_call(args, lambda admin: admin.put_item(document))


def _items_version(args: argparse.Namespace) -> int:
    """FILE is ``{"schema": ..., "examples": [...]}``, or a whole item document."""
    document = _read_json_file(args.file)
    if not isinstance(document, dict) or "schema" not in document:
        raise SystemExit(f'{args.file} must hold {{"schema": {{...}}, "examples": [...]}}')
    body = {"schema": document["schema"], "examples": document.get("examples", [])}
    return _admin_call(args, lambda admin: admin.add_version(args.item, body))


def _items_list(args: argparse.Namespace) -> int:
    names = ("q", "owner", "tag", "classification", "sharing_class", "lifecycle")
    criteria = {name: getattr(args, name) for name in names}
    return _admin_call(args, lambda admin: admin.list_items(**criteria))


def _items_show(args: argparse.Namespace) -> int:
    return _admin_call(args, lambda admin: admin.describe_item(args.item))


def _items_deprecate(args: argparse.Namespace) -> int:
    return _admin_call(args, lambda admin: admin.deprecate_item(args.item))


def _items_retire(args: argparse.Namespace) -> int:
    return _admin_call(args, lambda admin: admin.retire_item(args.item))


def _items_commands(sub: Any) -> None:
    items = sub.add_parser("items", help="data items and their schema versions").add_subparsers(
        dest="items_command", required=True
    )
    register = _with_hub(
        _add(items, "register", _items_register, "register an item (or update its metadata)")
    )
    register.add_argument("file", help="item document: metadata, schema, examples")
    version = _with_hub(
        _add(items, "version", _items_version, "add a schema version, checked for compatibility")
    )
    version.add_argument("item")
    version.add_argument("file", help='{"schema": ..., "examples": [...]} or an item document')
    listing = _with_hub(_add(items, "list", _items_list, "search the catalogue"))
    listing.add_argument("--q", help="text in the id, title or description")
    listing.add_argument("--owner")
    listing.add_argument("--tag")
    listing.add_argument("--classification")
    listing.add_argument("--sharing-class", dest="sharing_class")
    listing.add_argument("--lifecycle")
    for name, func, help_text in (
        ("show", _items_show, "show an item and its versions"),
        ("deprecate", _items_deprecate, "mark an item deprecated (still served)"),
        ("retire", _items_retire, "retire an item: refused from now on (final)"),
    ):
        _with_hub(_add(items, name, func, help_text)).add_argument("item")


def _audit_entries(args: argparse.Namespace) -> int:
    names = ("subject", "department", "item", "action", "outcome", "since", "until")
    filters = {name: getattr(args, name) for name in names}
    return _admin_call(
        args, lambda admin: admin.audit_entries(**filters, cursor=args.cursor, limit=args.limit)
    )


def _audit_verify(args: argparse.Namespace) -> int:
    from onceonly.hub.cli import audit_verify, session

    return audit_verify.run(
        hub=_hub_url(args),
        key=args.key,
        state_path=Path(args.state) if args.state else None,
        compare=[Path(p) for p in args.compare],
        full=args.full,
        token=(
            session.optional_credential(_hub_url(args), break_glass=False) if args.full else None
        ),
    )


def _audit_check_nodes(_: argparse.Namespace) -> int:
    """Read the hub's database (its settings) and recompute every stored subtree hash
    of the audit log from the leaves; one line per bad entry or node."""
    import asyncio

    from sqlalchemy.exc import SQLAlchemyError

    from onceonly.hub.audit import tree
    from onceonly.hub.config import Settings
    from onceonly.hub.db import make_engine, session_factory

    url = Settings().resolved_database_url

    async def check() -> tree.NodeCheck:
        engine = make_engine(url)
        try:
            return await tree.check_nodes(session_factory(engine), report=print)
        finally:
            await engine.dispose()

    try:
        checked = asyncio.run(check())
    except SQLAlchemyError as error:
        reason = str(error).splitlines()[0]
        print(f"cannot check: the audit log in {url.split('@')[-1]}: {reason}", file=sys.stderr)
        return 2
    if checked.damaged:
        print(f"DAMAGED: {checked.damaged} problems in the stored audit log", file=sys.stderr)
        return 1
    print(f"OK: {checked.nodes} stored subtree hashes recomputed from {checked.entries} entries")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from onceonly.hub.cli import demo

    return demo.run(keep=args.keep, hub_url=args.hub, root=Path(args.data_dir))


def _add(sub: Any, name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(func=func)
    return parser


def _with_hub(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--hub", help="hub base URL (default: $ONCEONLY_HUB_URL or the issuer)")
    return parser


def _hub_commands(sub: Any) -> None:
    serve = _add(
        sub, "serve", _serve, "run the hub (settings from ONCEONLY_* and $ONCEONLY_CONFIG)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--proxy-headers", action="store_true", help="trust X-Forwarded-* from the proxy"
    )
    _add(sub, "migrate", _migrate, "bring the database schema up to date")
    keys = sub.add_parser("keys", help="the hub's keys").add_subparsers(
        dest="keys_command", required=True
    )
    _add(keys, "init", _keys_init, "create the hub's keys where missing (mode 0600)")
    rotate = _add(keys, "rotate", _keys_rotate, "publish a new signing key; sign with it later")
    rotate.add_argument(
        "--activate-after",
        type=int,
        metavar="SECONDS",
        help="delay before the new key signs (default: token lifetimes + clock skew + reload)",
    )
    _add(
        keys,
        "rotate-derivation",
        _keys_rotate_derivation,
        "new root for derived keys; re-seal one-time-code secrets under it",
    )
    _add(keys, "show", _keys_show, "the signing keys and when each signs and retires")


def _admin_commands(sub: Any) -> None:
    catalogue = sub.add_parser("catalogue", help="the data item catalogue").add_subparsers(
        dest="catalogue_command", required=True
    )
    imported = _with_hub(
        _add(
            catalogue,
            "import",
            _catalogue_import,
            "register departments and items from a directory",
        )
    )
    imported.add_argument("directory", nargs="?", default="schemas")

    department = sub.add_parser("department", help="departments").add_subparsers(
        dest="dept_command", required=True
    )
    put = _with_hub(_add(department, "put", _department_put, "register or update a department"))
    put.add_argument("id")
    put.add_argument("--name", required=True)
    put.add_argument("--description", default="")
    put.add_argument("--adapter-url")

    client = sub.add_parser("client", help="department clients").add_subparsers(
        dest="client_command", required=True
    )
    cput = _with_hub(
        _add(client, "put", _client_put, "register a client or replace its public keys")
    )
    cput.add_argument("client_id")
    cput.add_argument("--department", required=True)
    cput.add_argument(
        "--jwks", required=True, help="file with the public JWKS (onceonly adapter jwks)"
    )
    disable = _with_hub(
        _add(
            client,
            "disable",
            _client_disable,
            "disable a client: its access tokens end at once, and it gets no new one",
        )
    )
    disable.add_argument("client_id")
    enable = _with_hub(
        _add(
            client,
            "enable",
            _client_enable,
            "enable a disabled client again (once the tokens it held have expired)",
        )
    )
    enable.add_argument("client_id")

    grants = sub.add_parser("grant", help="grants").add_subparsers(
        dest="grant_command", required=True
    )
    create = _with_hub(
        _add(grants, "create", _grant_create, "grant a department an item for a purpose")
    )
    create.add_argument("--consumer", required=True)
    create.add_argument("--item", required=True)
    create.add_argument("--purpose", required=True)
    create.add_argument("--legal-basis", required=True)
    create.add_argument("--fields", help="comma-separated top-level fields (default: all)")
    create.add_argument("--valid-until", help="RFC 3339 time")
    listing = _with_hub(_add(grants, "list", _grant_list, "list grants"))
    listing.add_argument("--consumer")
    revoke = _with_hub(_add(grants, "revoke", _grant_revoke, "revoke a grant at once"))
    revoke.add_argument("grant_id")

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="audit_command", required=True
    )
    entries = _with_hub(_add(audit, "entries", _audit_entries, "query audit entries"))
    for name in ("subject", "department", "item", "action", "outcome", "since", "until", "cursor"):
        entries.add_argument(f"--{name}")
    entries.add_argument("--limit", type=int, default=100)
    verify = _with_hub(
        _add(
            audit,
            "verify",
            _audit_verify,
            "verify the audit log with its public key: signature, no fork or shrink, entries"
            " (exit 0 verified, 1 tampering detected, 2 could not verify)",
        )
    )
    verify.add_argument(
        "--key", required=True, help="the pinned verifier key (GET /v1/audit/verifier-key)"
    )
    verify.add_argument(
        "--state",
        help="file with the last verified checkpoint"
        " (default: ~/.local/state/onceonly/audit-<origin>.json)",
    )
    verify.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="FILE",
        help="a checkpoint (or state file) another auditor verified; repeatable",
    )
    verify.add_argument(
        "--full",
        action="store_true",
        help="download every leaf hash and recompute the root, and check the hub's proofs;"
        " signed in as an auditor, also check every entry's content",
    )
    _add(
        audit,
        "check-nodes",
        _audit_check_nodes,
        "for operators, with the hub's settings: recompute every stored subtree hash of the"
        " audit log from its entries (exit 0 sound, 1 damaged, 2 could not check)",
    )


def build_parser() -> argparse.ArgumentParser:
    from onceonly.adapters.cli import add_commands
    from onceonly.hub.cli import access_commands, people_commands, registry_commands

    parser = argparse.ArgumentParser(
        prog="onceonly", description=__doc__.splitlines()[0] if __doc__ else None
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _hub_commands(sub)
    _admin_commands(sub)
    _items_commands(sub)
    demo = _add(sub, "demo", _demo, "play the whole story on loopback: a hub and three departments")
    demo.add_argument("--keep", action="store_true", help="leave the services running afterwards")
    demo.add_argument("--hub", help="play the story against a running hub at this URL")
    demo.add_argument("--data-dir", default="var/demo", help="where the demo keeps its data")
    people_commands.register(sub)
    access_commands.register(sub)
    registry_commands.register(sub)
    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    return status


if __name__ == "__main__":
    raise SystemExit(main())
