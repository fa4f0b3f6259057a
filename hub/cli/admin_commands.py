"""``onceonly catalogue|department|client|grant|items``: the registry and grants, over
the hub's HTTP API with the command's credential (:func:`onceonly.hub.cli.common.call_hub`):
the answer in the ``--output`` form on stdout; a refusal exits 1, an unreachable hub 2,
each with one line on stderr. ``items list`` and ``items show`` read the public
catalogue: they need no sign-in (decision 0006).
"""

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onceonly.hub.cli.common import (
    add_hub_command,
    call_hub,
    catalogue_dir,
    read_json_argument,
    segment,
)
from onceonly.hub.cli.output import Shape, human

if TYPE_CHECKING:
    from onceonly.hub.cli.admin_client import AdminClient

DEPARTMENTS = "/v1/admin/departments"
CLIENTS = "/v1/admin/clients"
ITEMS = Shape(
    columns=(
        "id",
        "owner",
        "title",
        "classification",
        "sharing_class",
        "lifecycle",
        "latest_version",
    ),
    what="items",
)
GRANTS = Shape(
    columns=("id", "consumer", "item", "purpose", "fields", "valid_from", "valid_until", "status"),
    what="grants",
)


def _versions_cell(versions: Any) -> str:
    """``v1 (2026-03-01T10:15:02+01:00), v2 (…)``: an item's versions in a table."""
    return ", ".join(
        f"v{v.get('version')} ({human(v.get('created_at'))})"
        for v in versions
        if isinstance(v, dict)
    )


ITEM = Shape(cells={"versions": _versions_cell})


def _catalogue_import(args: argparse.Namespace) -> int:
    from onceonly.hub.cli.progress import Progress

    if args.directory is not None:
        directory = Path(args.directory)
    elif Path("schemas").exists():  # an operator's own catalogue, even an incomplete one
        directory = Path("schemas")
    else:
        directory = catalogue_dir()
        print(f"the starter catalogue: {directory}", file=sys.stderr)
    total = len(list((directory / "items").glob("*.json")))

    def register(admin: "AdminClient") -> list[str]:
        with Progress("items registered", total=total) as progress:
            return admin.import_catalogue(directory, on_item=lambda _: progress.advance())

    return call_hub(args, register, shape=Shape(scalar="item", what="items"))


def _department_list(args: argparse.Namespace) -> int:
    shape = Shape(rows="departments", columns=("id", "name", "adapter_url"))
    return call_hub(args, lambda admin: admin.call("GET", DEPARTMENTS), shape=shape)


def _department_show(args: argparse.Namespace) -> int:
    return call_hub(args, lambda admin: admin.call("GET", f"{DEPARTMENTS}/{segment(args.id)}"))


def _department_put(args: argparse.Namespace) -> int:
    return call_hub(
        args,
        lambda admin: admin.put_department(
            args.id, name=args.name, description=args.description, adapter_url=args.adapter_url
        ),
    )


def _client_put(args: argparse.Namespace) -> int:
    jwks = read_json_argument(args.jwks)
    return call_hub(
        args, lambda admin: admin.put_client(args.client_id, department=args.department, jwks=jwks)
    )


def _client_list(args: argparse.Namespace) -> int:
    shape = Shape(rows="clients", columns=("client_id", "department", "status", "kids"))
    query = {"department": args.department} if args.department else {}
    return call_hub(args, lambda admin: admin.call("GET", CLIENTS, **query), shape=shape)


def _client_show(args: argparse.Namespace) -> int:
    return call_hub(args, lambda admin: admin.call("GET", f"{CLIENTS}/{segment(args.client_id)}"))


def _client_disable(args: argparse.Namespace) -> int:
    return call_hub(args, lambda admin: admin.disable_client(args.client_id))


def _client_enable(args: argparse.Namespace) -> int:
    return call_hub(
        args,
        lambda admin: admin.call("POST", f"/v1/admin/clients/{segment(args.client_id)}/enable"),
    )


def _grant_create(args: argparse.Namespace) -> int:
    fields = args.fields.split(",") if args.fields else None
    return call_hub(
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
    return call_hub(args, lambda admin: admin.list_grants(consumer=args.consumer), shape=GRANTS)


def _grant_revoke(args: argparse.Namespace) -> int:
    return call_hub(args, lambda admin: admin.revoke_grant(args.grant_id))


def _items_register(args: argparse.Namespace) -> int:
    document = read_json_argument(args.file)
    return call_hub(args, lambda admin: admin.put_item(document))


def _items_version(args: argparse.Namespace) -> int:
    """FILE is ``{"schema": ..., "examples": [...]}``, or a whole item document."""
    document = read_json_argument(args.file)
    if not isinstance(document, dict) or "schema" not in document:
        line = f'{args.file} must hold {{"schema": {{...}}, "examples": [...]}}'
        raise SystemExit(line)
    body = {"schema": document["schema"], "examples": document.get("examples", [])}
    return call_hub(args, lambda admin: admin.add_version(args.item, body))


def _items_list(args: argparse.Namespace) -> int:
    names = ("q", "owner", "tag", "classification", "sharing_class", "lifecycle")
    criteria = {name: getattr(args, name) for name in names}
    return call_hub(args, lambda admin: admin.list_items(**criteria), shape=ITEMS, public=True)


def _items_show(args: argparse.Namespace) -> int:
    return call_hub(args, lambda admin: admin.describe_item(args.item), shape=ITEM, public=True)


def _items_deprecate(args: argparse.Namespace) -> int:
    return call_hub(args, lambda admin: admin.deprecate_item(args.item))


def _items_retire(args: argparse.Namespace) -> int:
    return call_hub(args, lambda admin: admin.retire_item(args.item))


def _register_items(sub: Any) -> None:
    items = sub.add_parser("items", help="data items and their schema versions").add_subparsers(
        dest="items_command", required=True
    )
    register = add_hub_command(
        items, "register", _items_register, "register an item (or update its metadata)"
    )
    register.add_argument("file", help="item document: metadata, schema, examples")
    version = add_hub_command(
        items, "version", _items_version, "add a schema version, checked for compatibility"
    )
    version.add_argument("item")
    version.add_argument("file", help='{"schema": ..., "examples": [...]} or an item document')
    listing = add_hub_command(items, "list", _items_list, "search the catalogue (no sign-in)")
    listing.add_argument("--q", help="text in the id, title or description")
    listing.add_argument("--owner")
    listing.add_argument("--tag")
    listing.add_argument("--classification")
    listing.add_argument("--sharing-class", dest="sharing_class")
    listing.add_argument("--lifecycle")
    for name, func, help_text in (
        ("show", _items_show, "show an item and its versions (no sign-in)"),
        ("deprecate", _items_deprecate, "mark an item deprecated (still served)"),
        ("retire", _items_retire, "retire an item: refused from now on (final)"),
    ):
        add_hub_command(items, name, func, help_text).add_argument("item")


def _register_catalogue(sub: Any) -> None:
    catalogue = sub.add_parser("catalogue", help="the data item catalogue").add_subparsers(
        dest="catalogue_command", required=True
    )
    imported = add_hub_command(
        catalogue,
        "import",
        _catalogue_import,
        "register departments and items from a directory",
    )
    imported.add_argument(
        "directory",
        nargs="?",
        help="default: ./schemas if there is one, else the starter catalogue installed with"
        " onceonly",
    )
    department = sub.add_parser("department", help="departments").add_subparsers(
        dest="dept_command", required=True
    )
    add_hub_command(department, "list", _department_list, "every department (administrators)")
    add_hub_command(
        department, "show", _department_show, "one department (administrators)"
    ).add_argument("id")
    put = add_hub_command(department, "put", _department_put, "register or update a department")
    put.add_argument("id")
    put.add_argument("--name", required=True)
    put.add_argument("--description", default="")
    put.add_argument("--adapter-url")


def _register_clients(sub: Any) -> None:
    client = sub.add_parser("client", help="department clients").add_subparsers(
        dest="client_command", required=True
    )
    cput = add_hub_command(
        client, "put", _client_put, "register a client or replace its public keys"
    )
    cput.add_argument("client_id")
    listed = add_hub_command(client, "list", _client_list, "every client (administrators)")
    listed.add_argument("--department", help="only this department's clients")
    add_hub_command(
        client, "show", _client_show, "one client: standing and key ids (administrators)"
    ).add_argument("client_id")
    cput.add_argument("--department", required=True)
    cput.add_argument(
        "--jwks", required=True, help="file with the public JWKS (onceonly adapter jwks)"
    )
    disable = add_hub_command(
        client,
        "disable",
        _client_disable,
        "disable a client: its access tokens end at once, and it gets no new one",
    )
    disable.add_argument("client_id")
    enable = add_hub_command(
        client,
        "enable",
        _client_enable,
        "enable a disabled client again (once the tokens it held have expired)",
    )
    enable.add_argument("client_id")


def _register_grants(sub: Any) -> None:
    grants = sub.add_parser("grant", help="grants").add_subparsers(
        dest="grant_command", required=True
    )
    create = add_hub_command(
        grants, "create", _grant_create, "grant a department an item for a purpose"
    )
    create.add_argument("--consumer", required=True)
    create.add_argument("--item", required=True)
    create.add_argument("--purpose", required=True)
    create.add_argument("--legal-basis", required=True)
    create.add_argument(
        "--fields",
        help="comma-separated top-level fields (default: every field of the current version)",
    )
    create.add_argument("--valid-until", help="RFC 3339 time")
    listing = add_hub_command(grants, "list", _grant_list, "list grants")
    listing.add_argument("--consumer")
    revoke = add_hub_command(grants, "revoke", _grant_revoke, "revoke a grant at once")
    revoke.add_argument("grant_id")


def register(sub: Any) -> None:
    """Add ``catalogue``, ``department``, ``client``, ``grant`` and ``items``."""
    _register_catalogue(sub)
    _register_clients(sub)
    _register_grants(sub)
    _register_items(sub)
