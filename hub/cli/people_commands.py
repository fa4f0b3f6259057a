"""``onceonly login|logout|whoami`` and ``onceonly people ...``: people's accounts.

Passwords are read with a prompt that does not echo (or from standard input with
``--password-stdin``), sent once to the hub and never stored; the CLI keeps only the
short-lived session token (hub/cli/session.py).
"""

import argparse
import getpass
import os
import sys
import warnings
from typing import Any

from onceonly.hub.cli.common import (
    CommandFailed,
    Hub,
    add_hub_command,
    call_hub,
    hub_of,
    hub_url,
    segment,
    talking_to,
)
from onceonly.hub.cli.output import Shape, role_cell

NO_TERMINAL = (
    "no terminal to ask for the password on: give it on standard input with --password-stdin"
)
PERSON = Shape(cells={"roles": role_cell})
PEOPLE = Shape(
    rows="people",
    columns=("username", "display_name", "status", "roles", "sign_in"),
    cells={"roles": role_cell},
)


def _read_password(args: argparse.Namespace, prompt: str) -> str:
    """From standard input (``--password-stdin``), else asked on the terminal without
    echo; with no terminal to ask on, a refusal that names ``--password-stdin`` (getpass
    would read standard input with echo, or end in EOFError)."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", getpass.GetPassWarning)
            return getpass.getpass(prompt)
    except getpass.GetPassWarning:
        raise CommandFailed(NO_TERMINAL, status=1) from None
    except EOFError:  # Ctrl-D at the prompt
        raise CommandFailed("no password given", status=1) from None


def _sign_in(args: argparse.Namespace, hub: Hub) -> dict[str, Any]:
    if args.oidc:
        from onceonly.hub.cli.oidc_login import oidc_login

        try:
            return oidc_login(hub.url, tls=hub.tls)
        except TimeoutError as error:  # the browser's sign-in never came back
            raise CommandFailed(str(error), status=1) from None
    try:
        username = args.username or input("username: ")
    except EOFError:  # no terminal, or Ctrl-D
        raise CommandFailed("no username given: name it with --username", status=1) from None
    body: dict[str, Any] = {"username": username, "password": _read_password(args, "password: ")}
    if args.totp:
        body["totp"] = args.totp
    with hub.client("") as client:
        signed_in: dict[str, Any] = client.call("POST", "/v1/people/sign-in", body)
    return signed_in


def _login(args: argparse.Namespace) -> int:
    from onceonly.hub.cli import session as stored

    hub = hub_of(args)
    with talking_to(hub.url):
        signed_in = _sign_in(args, hub)
    stored.store(hub.url, signed_in)
    person = signed_in["person"]
    roles = ", ".join(
        r["role"] + (f" of {r['department']}" if r.get("department") else "")
        for r in person["roles"]
    )
    print(
        f"signed in as {person['username']} ({roles or 'no roles'}) until {signed_in['expires_at']}"
    )
    return 0


def _logout(args: argparse.Namespace) -> int:
    from onceonly.hub.cli import session as stored

    hub = hub_of(args)
    token = stored.forget(hub.url)
    if token is None:
        print("not signed in")
        return 0
    try:
        with talking_to(hub.url), hub.client(token) as client:
            client.call("POST", "/v1/people/sign-out")
    except CommandFailed as error:  # the local copy is gone either way
        print(f"signed out here; the hub did not confirm: {error}", file=sys.stderr)
        return 0
    print("signed out")
    return 0


def _call(
    args: argparse.Namespace, method: str, path: str, body: Any = None, *, shape: Shape = PERSON
) -> int:
    return call_hub(args, lambda client: client.call(method, path, body), shape=shape)


def _whoami(args: argparse.Namespace) -> int:
    from onceonly.hub.cli import session as stored

    if not os.environ.get("ONCEONLY_TOKEN") and stored.stored(hub_url(args)) is None:
        using = " (commands use the break-glass token)" if stored.break_glass_token() else ""
        print(f"not signed in{using}: run `onceonly login`", file=sys.stderr)
        return 1
    return _call(args, "GET", "/v1/people/me")


def _people_list(args: argparse.Namespace) -> int:
    return _call(args, "GET", "/v1/admin/people", shape=PEOPLE)


def _people_show(args: argparse.Namespace) -> int:
    return _call(args, "GET", f"/v1/admin/people/{segment(args.username)}")


def _role(text: str) -> dict[str, str]:
    role, _, department = text.partition(":")
    if role not in ("administrator", "auditor", "steward"):
        raise argparse.ArgumentTypeError("a role is administrator, auditor or steward:DEPARTMENT")
    return {"role": role, "department": department} if department else {"role": role}


def _people_put(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.role:
        body["roles"] = args.role
    if args.disable or args.enable:
        body["status"] = "disabled" if args.disable else "active"
    if args.display_name:
        body["display_name"] = args.display_name
    if args.set_password or args.password_stdin:  # --password-stdin alone sets it too
        body["password"] = _read_password(args, f"new password for {args.username}: ")
    if args.oidc_subject:
        body["oidc_subject"] = args.oidc_subject
    if args.reset_totp:
        body["reset_totp"] = True
    return _call(args, "PUT", f"/v1/admin/people/{segment(args.username)}", body)


def _password(args: argparse.Namespace) -> int:
    current = _read_password(args, "current password: ")
    new = _read_password(args, "new password: ")
    body = {"current_password": current, "new_password": new}
    return _call(args, "POST", "/v1/people/me/password", body)


def _totp_enrol(args: argparse.Namespace) -> int:
    body = {"password": _read_password(args, "password: ")}  # the hub asks for it again
    return _call(args, "POST", "/v1/people/me/totp", body)


def _totp_confirm(args: argparse.Namespace) -> int:
    return _call(args, "POST", "/v1/people/me/totp/confirm", {"code": args.code})


def register(sub: Any) -> None:
    """Add ``login``, ``logout``, ``whoami`` and ``people …`` to the subcommands ``sub``."""
    login = add_hub_command(
        sub, "login", _login, "sign in as a person; keeps a short-lived token", output=False
    )
    login.add_argument("--username")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    login.add_argument("--totp", metavar="CODE", help="the one-time code, if the account has one")
    login.add_argument("--oidc", action="store_true", help="sign in with the OpenID provider")
    add_hub_command(sub, "logout", _logout, "end the sign-in here and at the hub", output=False)
    add_hub_command(sub, "whoami", _whoami, "who is signed in, with which roles")

    people = sub.add_parser("people", help="people's accounts and roles").add_subparsers(
        dest="people_command", required=True
    )
    add_hub_command(people, "list", _people_list, "every account (administrators)")
    add_hub_command(people, "show", _people_show, "one account (administrators)").add_argument(
        "username"
    )
    put = add_hub_command(
        people, "put", _people_put, "create or change an account; roles replace the old"
    )
    put.add_argument("username")
    put.add_argument(
        "--role",
        type=_role,
        action="append",
        default=[],
        metavar="ROLE",
        help="administrator, auditor or steward:DEPARTMENT; repeatable; replaces the roles"
        " (left out: the roles stay)",
    )
    put.add_argument("--display-name")
    put.add_argument("--set-password", action="store_true", help="prompt for a password")
    put.add_argument(
        "--password-stdin", action="store_true", help="set the password, read from stdin"
    )
    put.add_argument("--oidc-subject", help="the person's subject at the OpenID provider")
    put.add_argument(
        "--reset-totp", action="store_true", help="remove one-time codes (lost device)"
    )
    put.add_argument("--disable", action="store_true", help="disable the account (ends sign-ins)")
    put.add_argument("--enable", action="store_true", help="enable a disabled account")
    password = add_hub_command(people, "password", _password, "change your own password")
    password.add_argument("--password-stdin", action="store_true", help="two lines: current, new")
    enrol = add_hub_command(
        people, "totp-enrol", _totp_enrol, "set up one-time codes (prints the secret)"
    )
    enrol.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add_hub_command(
        people, "totp-confirm", _totp_confirm, "confirm one-time codes with a first code"
    ).add_argument("code")
