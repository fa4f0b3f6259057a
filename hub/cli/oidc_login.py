"""``onceonly login --oidc``: sign in through the hub's OpenID Connect provider.

The browser does the sign-in, and the person confirms there, on the hub's page, that
the command line on this computer signs in (decision 0095); the CLI listens on a
loopback port (RFC 8252 §7.3) for the hub's redirect with a one-time code, and trades
the code for the session at ``POST /v1/people/oidc/token``. The redirect must carry
the random ``cli_state`` the CLI started with (RFC 8252 §8.9): a page that sends the
browser to the listener with a code of its own is ignored. The session token never
appears in a URL, and neither the code nor the token is printed.
"""

import hmac
import secrets
import ssl
import threading
import webbrowser
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from onceonly.hub.cli.admin_client import answer_of

_DONE_PAGE = (
    b'<!doctype html><html lang="en"><head><meta charset="utf-8">'
    b"<title>Onceonly</title></head><body><p>Signed in. You can close this window and"
    b" return to the terminal.</p></body></html>"
)


class _CodeCatcher(HTTPServer):
    """A one-shot loopback listener: keeps the first ``/callback?code=…&state=…`` with
    its own state."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CallbackHandler)
        self.state = secrets.token_urlsafe(24)
        self.code: str | None = None
        self.received = threading.Event()

    def accepts(self, state: list[str] | None) -> bool:
        return state is not None and hmac.compare_digest(state[0], self.state)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _CodeCatcher

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        codes = query.get("code")
        if parts.path != "/callback" or not codes or not self.server.accepts(query.get("state")):
            self.send_error(404)
            return
        if not self.server.received.is_set():
            self.server.code = codes[0]
            self.server.received.set()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(_DONE_PAGE)))
        self.end_headers()
        self.wfile.write(_DONE_PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the request line holds the one-time code."""


def oidc_login(
    hub_url: str,
    *,
    open_browser: Callable[[str], object] = webbrowser.open,
    timeout: float = 300,
    tls: ssl.SSLContext | None = None,
    poll_interval: float = 0.5,
) -> dict[str, Any]:
    """Sign in with the browser; the hub's ``SessionOut`` as a dict. ``tls``: as for
    :class:`~onceonly.hub.cli.admin_client.AdminClient`. ``poll_interval``: how often
    the local listener looks whether to stop, so its shutdown takes up to that long
    (socketserver's default; tests lower it).

    Raises TimeoutError when no sign-in comes back within ``timeout`` seconds, and
    AdminError when the hub refuses the one-time code.

    Example::

        signed_in = oidc_login("https://hub.example.gov")
        session.store("https://hub.example.gov", signed_in)
    """
    if not poll_interval > 0:  # 0 would make the listener spin without blocking
        raise ValueError(f"poll_interval must be more than 0 seconds, not {poll_interval!r}")
    hub = hub_url.rstrip("/")
    with _CodeCatcher() as catcher:
        listener = threading.Thread(
            target=catcher.serve_forever, args=(poll_interval,), daemon=True
        )
        listener.start()
        try:
            url = f"{hub}/v1/people/oidc/start?cli_port={catcher.port}&cli_state={catcher.state}"
            print(
                "Opening the browser to sign in, then confirm there that the command line"
                f" on this computer (port {catcher.port}) signs in; if it does not open,"
                f" visit:\n  {url}"
            )
            open_browser(url)
            if not catcher.received.wait(timeout):
                raise TimeoutError(f"no sign-in came back within {timeout:g} seconds")
        finally:
            catcher.shutdown()
            listener.join(timeout=5)
    assert catcher.code is not None
    return _redeem(hub, catcher.code, tls=tls)


def _redeem(hub: str, code: str, *, tls: ssl.SSLContext | None) -> dict[str, Any]:
    verify = tls if tls is not None else True
    with httpx.Client(timeout=30.0, verify=verify) as http:
        response = http.post(f"{hub}/v1/people/oidc/token", json={"code": code})
    signed_in: dict[str, Any] = answer_of(response)
    return signed_in
