"""Keys this hub adds to an ASGI scope, for the layers below the middleware that sets
them (ASGI lets a server or middleware add keys to a scope; these are namespaced)."""

from typing import Final

from starlette.types import Scope

from onceonly.adapters import serving

# The request's method on the wire, when a middleware hands it on as another: a HEAD
# answered as the GET it asks for (ops.http_contract.HeadAsGet). A DPoP proof's ``htm``
# is the method the client sent (RFC 9449 §4.3), so it is judged against this one.
SENT_METHOD: Final = "onceonly.sent_method"

# A request whose body the server refused as malformed HTTP/1.1 (a bad chunk, framing
# past its bound) while a route read it: the server answered 400 itself and closed the
# connection, and the route then read a ClientDisconnect. The server's protocol sets it
# to True in ``scope["state"]``; onceonly.hub.errors then counts and audits the 400 the
# client got, not a 499. One key, the protocol's (the hub may import the SDK; the SDK
# never imports the hub).
MALFORMED_BODY: Final = serving.MALFORMED_BODY


def route_path(scope: Scope) -> str:
    """The path the application's routes see (behind a ``root_path``, without it)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        return path[len(root) :]
    return path
