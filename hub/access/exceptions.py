from hub.errors import HubError


class NoGrant(HubError):
    """No active grant matches department, item and purpose (deny by default)."""

    status = 403
    slug = "no-grant"
    title = "No active grant"


class GrantNotFound(HubError):
    status = 404
    slug = "grant-not-found"
    title = "No such grant"


class NotShared(HubError):
    status = 409
    slug = "item-not-shared"
    title = "Data item is not shared"
