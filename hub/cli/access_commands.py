"""``onceonly access``: access requests and grants, as a signed-in steward or auditor.

The credential is the one every command uses (:func:`onceonly.hub.cli.session.credential`:
``$ONCEONLY_TOKEN``, the sign-in of ``onceonly login``, or break-glass). Results are
printed as JSON; a refusal prints ``refused: <problem detail>`` to stderr and exits
1; a hub that cannot be reached exits 2. See docs/access.md for an example session.
"""

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import httpx

REQUESTS = "/v1/access-requests"
GRANTS = "/v1/grants"


class Refused(RuntimeError):
    """The hub answered with a problem; the message is its title and detail."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        detail = problem.get("detail", "")
        super().__init__(f"HTTP {status}: {problem.get('title', '')}: {detail}")


def _call(http: httpx.Client, method: str, path: str, body: Any = None, **params: Any) -> Any:
    response = http.request(
        method, path, json=body, params={k: v for k, v in params.items() if v is not None}
    )
    if response.status_code >= 400:
        try:
            problem = response.json()
        except ValueError:
            problem = {"detail": response.text[:200]}
        raise Refused(response.status_code, problem if isinstance(problem, dict) else {})
    return response.json()


Call = Callable[[httpx.Client], Any]


def _run(args: argparse.Namespace, call: Call) -> int:
    from onceonly.hub.cli import _hub_url
    from onceonly.hub.cli.session import credential

    hub_url = _hub_url(args)
    headers = {"Authorization": f"Bearer {credential(hub_url)}"}
    try:
        with httpx.Client(base_url=hub_url.rstrip("/"), headers=headers, timeout=30) as http:
            result = call(http)
    except Refused as error:
        print(f"refused: {error}", file=sys.stderr)
        return 1
    except (httpx.TransportError, OSError) as error:
        print(f"cannot reach the hub at {hub_url}: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def _fields(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:  # an empty --fields must not quietly mean "as asked"
        raise SystemExit("--fields needs at least one field name")
    return names


def _purposes(args: argparse.Namespace) -> int:
    return _run(args, lambda http: _call(http, "GET", "/v1/purposes"))


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
    return _run(args, lambda http: _call(http, "POST", REQUESTS, body))


def _approve(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"fields": _fields(args.fields), "valid_until": args.valid_until}
    if args.reason:
        body["reason"] = args.reason
    return _run(args, lambda http: _call(http, "POST", f"{REQUESTS}/{args.id}/approve", body))


def _refuse(args: argparse.Namespace) -> int:
    body = {"reason": args.reason}
    return _run(args, lambda http: _call(http, "POST", f"{REQUESTS}/{args.id}/refuse", body))


def _withdraw(args: argparse.Namespace) -> int:
    return _run(args, lambda http: _call(http, "POST", f"{REQUESTS}/{args.id}/withdraw"))


def _revoke(args: argparse.Namespace) -> int:
    body = {"reason": args.reason}
    return _run(args, lambda http: _call(http, "POST", f"{GRANTS}/{args.grant_id}/revoke", body))


def _renew(args: argparse.Namespace) -> int:
    body = {"purpose_text": args.purpose_text, "valid_until": args.valid_until}
    body = {k: v for k, v in body.items() if v is not None}
    return _run(args, lambda http: _call(http, "POST", f"{GRANTS}/{args.grant_id}/renew", body))


def _list(args: argparse.Namespace) -> int:
    filters = {
        "status": args.status,
        "box": args.box,
        "department": args.department,
        "item": args.item,
        "overdue": "true" if args.overdue else None,
    }
    return _run(args, lambda http: _call(http, "GET", REQUESTS, **filters))


def _show(args: argparse.Namespace) -> int:
    return _run(args, lambda http: _call(http, "GET", f"{REQUESTS}/{args.id}"))


def _grants(args: argparse.Namespace) -> int:
    filters = {"consumer": args.consumer, "item": args.item}
    return _run(args, lambda http: _call(http, "GET", GRANTS, **filters))


def _add(sub: Any, name: str, func: Callable[[argparse.Namespace], int], help_text: str) -> Any:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(func=func)
    parser.add_argument("--hub", help="hub base URL (default: $ONCEONLY_HUB_URL or the issuer)")
    return parser


def register(sub: Any) -> None:
    """Add ``onceonly access …`` to the top-level subcommands ``sub``."""
    access = sub.add_parser(
        "access", help="access requests and grants (stewards, auditors)"
    ).add_subparsers(dest="access_command", required=True)
    _add(access, "purposes", _purposes, "the purposes a request may name")
    request = _add(access, "request", _request, "ask for access to an item for a purpose")
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
    approve = _add(access, "approve", _approve, "approve a request (owner's steward)")
    approve.add_argument("id")
    approve.add_argument("--fields", help="a subset of the requested fields (default: all)")
    approve.add_argument("--valid-until", help="not later than requested")
    approve.add_argument("--reason")
    refuse = _add(access, "refuse", _refuse, "refuse a request, with a reason")
    refuse.add_argument("id")
    refuse.add_argument("--reason", required=True)
    _add(access, "withdraw", _withdraw, "withdraw your department's request").add_argument("id")
    revoke = _add(access, "revoke", _revoke, "revoke a grant at once")
    revoke.add_argument("grant_id")
    revoke.add_argument("--reason", required=True)
    renew = _add(access, "renew", _renew, "ask to renew a grant before it ends (consumer)")
    renew.add_argument("grant_id")
    renew.add_argument("--purpose-text", help="why, in words (default: as first asked)")
    renew.add_argument("--valid-until", help="RFC 3339 time with a time zone")
    listing = _add(access, "list", _list, "list the requests you may see")
    listing.add_argument("--status", choices=("pending", "approved", "refused", "withdrawn"))
    listing.add_argument("--box", choices=("inbox", "outbox"))
    listing.add_argument("--department")
    listing.add_argument("--item")
    listing.add_argument("--overdue", action="store_true", help="only pending past their due date")
    _add(access, "show", _show, "show one request").add_argument("id")
    grants = _add(access, "grants", _grants, "list the grants you may see")
    grants.add_argument("--consumer")
    grants.add_argument("--item")
