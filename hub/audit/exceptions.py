from hub.errors import HubError


class AuditUnavailable(HubError):
    """The entry could not be committed, so the request it audits must fail."""

    status = 503
    slug = "audit-unavailable"
    title = "Audit log unavailable"


class EntryNotFound(HubError):
    status = 404
    slug = "entry-not-found"
    title = "No such audit entry"
