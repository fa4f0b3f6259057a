"""The scope vocabulary: what an access token's ``scope`` claim (RFC 9068 §2.2.3) says.

Every domain that checks a scope takes its name from here; which scopes a department
holds is decided by its grants (onceonly.hub.access.service.scopes_for), and handed to
token issuance as a :data:`ScopesOf`.
"""

from collections.abc import Awaitable, Callable

READ_SCOPE_PREFIX = "read:"
PUBLISH_SCOPE_PREFIX = "publish:"
AUDIT_READ_SCOPE = "audit:read"

ScopesOf = Callable[[str], Awaitable[frozenset[str]]]
"""The scopes a department (named by its id) may hold now."""


def read_scope(item_id: str) -> str:
    return READ_SCOPE_PREFIX + item_id


def publish_scope(item_id: str) -> str:
    return PUBLISH_SCOPE_PREFIX + item_id
