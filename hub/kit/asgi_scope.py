"""Keys this hub adds to an ASGI scope, for the layers below the middleware that sets
them (ASGI lets a server or middleware add keys to a scope; these are namespaced)."""

from typing import Final

# The request's method on the wire, when a middleware hands it on as another: a HEAD
# answered as the GET it asks for (ops.http_contract.HeadAsGet). A DPoP proof's ``htm``
# is the method the client sent (RFC 9449 §4.3), so it is judged against this one.
SENT_METHOD: Final = "onceonly.sent_method"
