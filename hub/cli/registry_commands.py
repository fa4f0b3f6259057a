"""``onceonly registry``: registry changes that wait for a second person
(docs/registry.md, "Two people for dangerous changes").

Over HTTP with the credential every command uses, exactly like ``onceonly access``:
results on stdout in the ``--output`` form; a refusal prints ``refused: <problem>`` to stderr and
exits 1; an unreachable hub exits 2.
"""

import argparse
from typing import Any

from onceonly.hub.cli.common import add_hub_command, call_hub, segment
from onceonly.hub.cli.output import Shape

CHANGES = "/v1/admin/registry-changes"
CHANGE_ROWS = Shape(
    rows="changes",
    columns=("id", "item", "owner", "status", "requested_by", "requested_at", "decided_by"),
)


def _changes(args: argparse.Namespace) -> int:
    filters = {"status": args.status, "item": args.item}
    return call_hub(args, lambda admin: admin.call("GET", CHANGES, **filters), shape=CHANGE_ROWS)


def _show(args: argparse.Namespace) -> int:
    return call_hub(args, lambda admin: admin.call("GET", f"{CHANGES}/{segment(args.id)}"))


def _approve(args: argparse.Namespace) -> int:
    body = {"reason": args.reason} if args.reason else {}
    return call_hub(
        args, lambda admin: admin.call("POST", f"{CHANGES}/{segment(args.id)}/approve", body)
    )


def _refuse(args: argparse.Namespace) -> int:
    body = {"reason": args.reason}
    return call_hub(
        args, lambda admin: admin.call("POST", f"{CHANGES}/{segment(args.id)}/refuse", body)
    )


def register(sub: Any) -> None:
    """Add ``onceonly registry …`` to the top-level subcommands ``sub``."""
    registry = sub.add_parser(
        "registry", help="registry changes that wait for an administrator"
    ).add_subparsers(dest="registry_command", required=True)
    listing = add_hub_command(registry, "changes", _changes, "list registry changes")
    listing.add_argument("--status", choices=("pending", "approved", "refused"))
    listing.add_argument("--item")
    add_hub_command(registry, "show", _show, "show one registry change").add_argument("id")
    approve = add_hub_command(registry, "approve", _approve, "approve a change (administrator)")
    approve.add_argument("id")
    approve.add_argument("--reason")
    refuse = add_hub_command(
        registry, "refuse", _refuse, "refuse a change, with a reason (administrator)"
    )
    refuse.add_argument("id")
    refuse.add_argument("--reason", required=True)
