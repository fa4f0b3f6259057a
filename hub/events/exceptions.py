from onceonly.hub.kit.problems import HubError


class NotOwner(HubError):
    """Only the owner department publishes changes of its items."""

    status = 403
    slug = "not-owner"
    title = "Only the owner publishes changes"


class DeliveryNotFound(HubError):
    status = 404
    slug = "delivery-not-found"
    title = "No such delivery"


class IdempotencyKeyReused(HubError):
    """The owner's idempotency key names an event that announced another change
    (draft-ietf-httpapi-idempotency-key-header §2.7: a key reused for another payload)."""

    status = 422
    slug = "idempotency-key-reused"
    title = "Idempotency key used for another event"


class NotSubscribed(HubError):
    """The department of a delivery unsubscribed from the item after the event was
    published (or subscribed again since, which starts it anew): the delivery is
    cancelled unsent, with this reason in its ``refused`` entry. Never an answer."""

    status = 409
    slug = "not-subscribed"
    title = "Not subscribed"
