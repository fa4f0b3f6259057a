"""Unpadded base64url (RFC 4648 §5, as JOSE and DPoP use it, RFC 7515 §2).

One implementation serves the hub and the departments' SDK: the SDK's
``onceonly.adapters.base64url`` (the SDK never imports the hub, so the hub takes the
SDK's; decision 0022). ``decode`` is strict: ValueError for padding or characters
outside the alphabet.
"""

from onceonly.adapters.base64url import decode, encode

__all__ = ["decode", "encode"]
