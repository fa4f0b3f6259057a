"""``onceonly access``: access requests and grants, as a signed-in steward or auditor.

The credential is the one every command uses (:func:`onceonly.hub.cli.session.credential`:
``$ONCEONLY_TOKEN``, the sign-in of ``onceonly login``, or break-glass). Results are
shown in the ``--output`` form (JSON when standard output is not a terminal); a
refusal prints ``refused: <problem detail>`` to stderr and exits 1; a hub that cannot
be reached exits 2. See docs/access.md for an example session.
"""

import argparse
from typing import Any

from onceonly.hub.cli.common import add_hub_command, call_hub, segment
from onceonly.hub.cli.output import Shape

REQUESTS = "/v1/access-requests"
GRANTS = "/v1/grants"
REQUEST_ROWS = Shape(
    rows="requests",
    columns=(
        "id",
        "consumer",
        "item",
        "purpose",
        "status",
        "requested_by",
        "requested_at",
        "answer_due",
        "overdue",
    ),
)
GRANT_ROWS = Shape(
    rows="grants",
    columns=("id", "consumer", "item", "purpose", "fields", "valid_from", "valid_until", "status"),
)


def _fields(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:  # an empty --fields must not quietly mean "as asked"
        raise SystemExit("--fields needs at least one field name")
    return names


def _purposes(args: argparse.Namespace) -> int:
    shape = Shape(rows="purposes", columns=("code", "title"))
    return call_hub(args, lambda admin: admin.call("GET", "/v1/purposes"), shape=shape)


def _request(args: argparse.Namespace) -> int:
    body = {
        "consumer": args.consumer,
        "item": args.item,
        "purpose": args.purpose,
        "purpose_text": args.purpose_text,
        "legal_basis": args.legal_basis,
        "fields": "all" if args.fields == "all" else _fields(args.fields),
        "valid_until": args.valid_until,
    }
    return call_hub(args, lambda admin: admin.call("POST", REQUESTS, body))


def _approve(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"fields": _fields(args.fields), "valid_until": args.valid_until}
    if args.reason:
        body["reason"] = args.reason
    return call_hub(
        args, lambda admin: admin.call("POST", f"{REQUESTS}/{segment(args.id)}/approve", body)
    )


def _refuse(args: argparse.Namespace) -> int:
    body = {"reason": args.reason}
    return call_hub(
        args, lambda admin: admin.call("POST", f"{REQUESTS}/{segment(args.id)}/refuse", body)
    )


def _withdraw(args: argparse.Namespace) -> int:
    return call_hub(
        args, lambda admin: admin.call("POST", f"{REQUESTS}/{segment(args.id)}/withdraw")
    )


def _revoke(args: argparse.Namespace) -> int:
    body = {"reason": args.reason}
    return call_hub(
        args, lambda admin: admin.call("POST", f"{GRANTS}/{segment(args.grant_id)}/revoke", body)
    )


def _renew(args: argparse.Namespace) -> int:
    body = {"purpose_text": args.purpose_text, "valid_until": args.valid_until}
    body = {k: v for k, v in body.items() if v is not None}
    return call_hub(
        args, lambda admin: admin.call("POST", f"{GRANTS}/{segment(args.grant_id)}/renew", body)
    )


def _list(args: argparse.Namespace) -> int:
    filters = {
        "status": args.status,
        "box": args.box,
        "department": args.department,
        "item": args.item,
        "overdue": "true" if args.overdue else None,
    }
    return call_hub(args, lambda admin: admin.call("GET", REQUESTS, **filters), shape=REQUEST_ROWS)


def _show(args: argparse.Namespace) -> int:
    return call_hub(args, lambda admin: admin.call("GET", f"{REQUESTS}/{segment(args.id)}"))


def _grants(args: argparse.Namespace) -> int:
    filters = {"consumer": args.consumer, "item": args.item}
    return call_hub(args, lambda admin: admin.call("GET", GRANTS, **filters), shape=GRANT_ROWS)


def register(sub: Any) -> None:
    """Add ``onceonly access …`` to the top-level subcommands ``sub``."""
    access = sub.add_parser(
        "access", help="access requests and grants (stewards, auditors)"
    ).add_subparsers(dest="access_command", required=True)
    add_hub_command(access, "purposes", _purposes, "the purposes a request may name")
    request = add_hub_command(
        access, "request", _request, "ask for access to an item for a purpose"
    )
    request.add_argument("--consumer", required=True, help="your department")
    request.add_argument("--item", required=True)
    request.add_argument("--purpose", required=True, help="a code of `onceonly access purposes`")
    request.add_argument("--purpose-text", required=True, help="why, in words")
    request.add_argument("--legal-basis", required=True)
    request.add_argument(
        "--fields",
        help="comma-separated top-level fields, or 'all' (default: the fields that are "
        "not personal; personal fields are granted only when named or with 'all')",
    )
    request.add_argument("--valid-until", help="RFC 3339 time with a time zone")
    approve = add_hub_command(access, "approve", _approve, "approve a request (owner's steward)")
    approve.add_argument("id")
    approve.add_argument("--fields", help="a subset of the requested fields (default: all)")
    approve.add_argument("--valid-until", help="not later than requested")
    approve.add_argument("--reason")
    refuse = add_hub_command(access, "refuse", _refuse, "refuse a request, with a reason")
    refuse.add_argument("id")
    refuse.add_argument("--reason", required=True)
    add_hub_command(
        access, "withdraw", _withdraw, "withdraw your department's request"
    ).add_argument("id")
    revoke = add_hub_command(access, "revoke", _revoke, "revoke a grant at once")
    revoke.add_argument("grant_id")
    revoke.add_argument("--reason", required=True)
    renew = add_hub_command(
        access, "renew", _renew, "ask to renew a grant before it ends (consumer)"
    )
    renew.add_argument("grant_id")
    renew.add_argument("--purpose-text", help="why, in words (default: as first asked)")
    renew.add_argument("--valid-until", help="RFC 3339 time with a time zone")
    listing = add_hub_command(access, "list", _list, "list the requests you may see")
    listing.add_argument("--status", choices=("pending", "approved", "refused", "withdrawn"))
    listing.add_argument("--box", choices=("inbox", "outbox"))
    listing.add_argument("--department")
    listing.add_argument("--item")
    listing.add_argument("--overdue", action="store_true", help="only pending past their due date")
    add_hub_command(access, "show", _show, "show one request").add_argument("id")
    grants = add_hub_command(access, "grants", _grants, "list the grants you may see")
    grants.add_argument("--consumer")
    grants.add_argument("--item")
