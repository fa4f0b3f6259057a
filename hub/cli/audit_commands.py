"""``onceonly audit entries|verify|check-nodes``: query, verify and check the audit log."""

import argparse
import sys
from pathlib import Path
from typing import Any

from onceonly.hub.cli.common import add_command, add_hub_command, call_hub, hub_of


def _entries(args: argparse.Namespace) -> int:
    names = ("subject", "department", "item", "action", "outcome", "since", "until")
    filters = {name: getattr(args, name) for name in names}
    return call_hub(
        args, lambda admin: admin.audit_entries(**filters, cursor=args.cursor, limit=args.limit)
    )


def _verify(args: argparse.Namespace) -> int:
    from onceonly.hub.cli import audit_verify, session

    hub = hub_of(args)
    return audit_verify.run(
        hub=hub.url,
        key=args.key,
        state_path=Path(args.state) if args.state else None,
        compare=[Path(p) for p in args.compare],
        full=args.full,
        token=(session.optional_credential(hub.url, break_glass=False) if args.full else None),
        tls=hub.tls,
    )


def _check_nodes(_: argparse.Namespace) -> int:
    """Read the hub's database (its settings) and recompute every stored subtree hash
    of the audit log from the leaves; one line per bad entry or node."""
    import asyncio

    from sqlalchemy.exc import SQLAlchemyError

    from onceonly.hub.audit import tree
    from onceonly.hub.cli.startup import database_name, load_settings
    from onceonly.hub.db import make_engine, session_factory

    url = load_settings().resolved_database_url

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
        print(f"cannot check: the audit log in {database_name(url)}: {reason}", file=sys.stderr)
        return 2
    if checked.damaged:
        print(f"DAMAGED: {checked.damaged} problems in the stored audit log", file=sys.stderr)
        return 1
    print(f"OK: {checked.nodes} stored subtree hashes recomputed from {checked.entries} entries")
    return 0


def register(sub: Any) -> None:
    """Add ``onceonly audit …`` to the top-level subcommands ``sub``."""
    audit = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="audit_command", required=True
    )
    entries = add_hub_command(audit, "entries", _entries, "query audit entries")
    for name in ("subject", "department", "item", "action", "outcome", "since", "until", "cursor"):
        entries.add_argument(f"--{name}")
    entries.add_argument("--limit", type=int, default=100)
    verify = add_hub_command(
        audit,
        "verify",
        _verify,
        "verify the audit log with its public key: signature, no fork or shrink, entries"
        " (exit 0 verified, 1 tampering detected, 2 could not verify)",
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
    add_command(
        audit,
        "check-nodes",
        _check_nodes,
        "for operators, with the hub's settings: recompute every stored subtree hash of the"
        " audit log from its entries (exit 0 sound, 1 damaged, 2 could not check)",
    )
