"""The CLI's credential: a person's sign-in kept by ``onceonly login``, or break-glass.

``onceonly login`` stores the short-lived session token (never a password) in
``$ONCEONLY_SESSION_FILE`` or ``$XDG_CONFIG_HOME/onceonly/session.json`` (default
``~/.config/onceonly/session.json``), mode 0600, one entry per hub URL. Commands use,
in this order: ``$ONCEONLY_TOKEN``; the stored sign-in for the hub, while it lasts;
the break-glass administrator token (``$ONCEONLY_ADMIN_TOKEN`` or the hub's
``keys/admin-token`` file, readable only on the hub's own machine).
"""

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from onceonly.hub.kit.clock import aware, utcnow


def session_file() -> Path:
    explicit = os.environ.get("ONCEONLY_SESSION_FILE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "onceonly" / "session.json"


def _read() -> dict[str, Any]:
    path = session_file()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(data: dict[str, Any]) -> None:
    path = session_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(temporary, path)


def _key(hub_url: str) -> str:
    return hub_url.rstrip("/")


def store(hub_url: str, signed_in: dict[str, Any]) -> None:
    """Keep a sign-in (the hub's ``SessionOut``) for ``hub_url``."""
    data = _read()
    data[_key(hub_url)] = {
        "token": signed_in["token"],
        "expires_at": signed_in["expires_at"],
        "username": signed_in["person"]["username"],
    }
    _write(data)


def forget(hub_url: str) -> str | None:
    """Drop the sign-in for ``hub_url``; its token, if there was one."""
    data = _read()
    entry = data.pop(_key(hub_url), None)
    _write(data)
    return str(entry["token"]) if isinstance(entry, dict) and "token" in entry else None


def stored(hub_url: str) -> dict[str, Any] | None:
    """The stored sign-in for ``hub_url`` if it has not expired."""
    entry = _read().get(_key(hub_url))
    if not isinstance(entry, dict):
        return None
    try:
        expires = aware(datetime.fromisoformat(str(entry["expires_at"]).replace("Z", "+00:00")))
    except (KeyError, ValueError):
        return None
    return entry if expires > utcnow() else None


def break_glass_token() -> str | None:
    from onceonly.hub.cli.startup import load_settings

    token = os.environ.get("ONCEONLY_ADMIN_TOKEN")
    if token:
        return token
    path = load_settings().keys_dir / "admin-token"
    return path.read_text().strip() if path.is_file() else None


def optional_credential(hub_url: str, *, break_glass: bool = True) -> str | None:
    """The bearer token for a command against ``hub_url`` (see the module's docstring),
    or None when there is none; ``break_glass=False``: only a person's own."""
    token = os.environ.get("ONCEONLY_TOKEN")
    if token:
        return token
    signed_in = stored(hub_url)
    if signed_in is not None:
        if break_glass and os.environ.get("ONCEONLY_ADMIN_TOKEN"):
            # Set on purpose, and passed over: say so, or a break-glass-only command's 403
            # reads as if the token were refused.
            print(
                f"onceonly: using the sign-in of {signed_in.get('username', '?')} at"
                f" {_key(hub_url)}, not ONCEONLY_ADMIN_TOKEN (a sign-in comes first):"
                " run `onceonly logout`, or set ONCEONLY_TOKEN, to use the break-glass token",
                file=sys.stderr,
            )
        return str(signed_in["token"])
    return break_glass_token() if break_glass else None


def credential(hub_url: str) -> str:
    """The bearer token for a command against ``hub_url``; exit if there is none."""
    token = optional_credential(hub_url)
    if token is None:
        raise SystemExit("not signed in: run `onceonly login` (or set ONCEONLY_TOKEN)")
    return token
