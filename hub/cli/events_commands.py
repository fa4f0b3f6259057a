"""``onceonly events dead-letters|replay``: change-event deliveries that failed every
retry (docs/events.md, "For operators: dead letters"), as an administrator.

A replay puts the delivery back in the queue with a fresh retry schedule and is
audited (``event.replay``); the hub answers it with no content, so the command
prints ``{"replayed": "<delivery id>"}``.
"""

import argparse
from typing import Any

from onceonly.hub.cli.common import add_hub_command, call_hub
from onceonly.hub.cli.output import Shape

DELIVERIES = "/v1/admin/events/deliveries"
DEAD_LETTERS = Shape(
    rows="deliveries",
    columns=("id", "item", "department", "kind", "attempts", "last_error", "next_attempt_at"),
)


def _dead_letters(args: argparse.Namespace) -> int:
    return call_hub(
        args,
        lambda admin: admin.call("GET", DELIVERIES, status="dead", limit=args.limit),
        shape=DEAD_LETTERS,
    )


def _replay(args: argparse.Namespace) -> int:
    def replay(admin: Any) -> dict[str, str]:
        admin.replay_delivery(args.delivery_id)
        return {"replayed": args.delivery_id}

    return call_hub(args, replay)


def register(sub: Any) -> None:
    """Add ``onceonly events …`` to the top-level subcommands ``sub``."""
    events = sub.add_parser("events", help="change-event deliveries (administrators)")
    commands = events.add_subparsers(dest="events_command", required=True)
    listing = add_hub_command(
        commands, "dead-letters", _dead_letters, "deliveries that failed every retry"
    )
    listing.add_argument("--limit", type=int, default=100, help="at most this many (1-1000)")
    add_hub_command(
        commands, "replay", _replay, "send a dead letter again, with a fresh retry schedule"
    ).add_argument("delivery_id")
