from hub.errors import HubError


class NotOwner(HubError):
    """Only the owner department publishes changes of its items."""

    status = 403
    slug = "not-owner"
    title = "Only the owner publishes changes"


class DeliveryNotFound(HubError):
    status = 404
    slug = "delivery-not-found"
    title = "No such delivery"
