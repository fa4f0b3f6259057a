"""Cross-site request forgery tokens: the synchronizer token pattern, stateless.

A form's token is an HMAC, under a key derived for the console, of what the form is
bound to: the visitor's sign-in (the hash of their session token) or, before they
sign in, a random value in a cookie of its own. Only the hub can make a token, and a
token is good only with the cookie it was made for: another site can neither read a
page's token nor make one (OWASP CSRF Prevention Cheat Sheet, "Synchronizer token"
and "Signed double-submit cookie"). Every POST of the console is checked
(onceonly.hub.console.dependencies); a sign-out or a new sign-in changes the binding,
so old tokens die with the session.
"""

import hashlib
import hmac

from onceonly.hub.kit import base64url


def _binding(*, session_hash: str | None, pre_session: str | None) -> bytes | None:
    if session_hash:
        return b"session\0" + session_hash.encode()
    if pre_session:
        return b"pre-session\0" + pre_session.encode()
    return None


def token_for(key: bytes, *, session_hash: str | None, pre_session: str | None) -> str:
    """The token of a form shown to this visitor ("" when there is nothing to bind to)."""
    binding = _binding(session_hash=session_hash, pre_session=pre_session)
    if binding is None:
        return ""
    return base64url.encode(hmac.new(key, binding, hashlib.sha256).digest())


def token_holds(
    key: bytes, presented: str | None, *, session_hash: str | None, pre_session: str | None
) -> bool:
    """Whether ``presented`` is the token of this visitor's binding (in constant time)."""
    expected = token_for(key, session_hash=session_hash, pre_session=pre_session)
    return bool(expected) and hmac.compare_digest(expected, presented or "")
