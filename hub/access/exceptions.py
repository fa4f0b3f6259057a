"""Access errors, each rendered as an RFC 9457 problem.

::

    HubError
    ├── NoGrant (403)              no active grant for consumer, item and purpose
    ├── GrantNotFound (404)        no such grant, or not one the caller may see
    ├── GrantNotActive (409)       revoking a grant that is already revoked
    ├── NotShared (409)            the item's sharing class is ``none``
    ├── UnknownPurpose (400)       not a code of the purpose list
    ├── PurposesUnavailable (503)  the purpose list cannot be read
    ├── RequestNotFound (404)      no such request, or not one the caller may see
    ├── RequestNotPending (409)    the request was already decided or withdrawn
    └── DuplicateRequest (409)     the same request is already pending
"""

from onceonly.hub.kit.problems import HubError


class NoGrant(HubError):
    """No active grant matches department, item and purpose (deny by default)."""

    status = 403
    slug = "no-grant"
    title = "No active grant"


class GrantNotFound(HubError):
    status = 404
    slug = "grant-not-found"
    title = "No such grant"


class GrantNotActive(HubError):
    status = 409
    slug = "grant-not-active"
    title = "Grant is not active"


class NotShared(HubError):
    status = 409
    slug = "item-not-shared"
    title = "Data item is not shared"


class UnknownPurpose(HubError):
    status = 400
    slug = "unknown-purpose"
    title = "Unknown purpose"


class PurposesUnavailable(HubError):
    status = 503
    slug = "purposes-unavailable"
    title = "Purpose list unavailable"


class RequestNotFound(HubError):
    status = 404
    slug = "request-not-found"
    title = "No such access request"


class RequestNotPending(HubError):
    status = 409
    slug = "request-not-pending"
    title = "Access request is no longer pending"


class DuplicateRequest(HubError):
    status = 409
    slug = "duplicate-request"
    title = "The same access request is already pending"
