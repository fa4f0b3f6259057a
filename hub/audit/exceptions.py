from onceonly.hub.kit.problems import HubError


class AuditUnavailable(HubError):
    """The entry could not be committed, so the request it audits must fail."""

    status = 503
    slug = "audit-unavailable"
    title = "Audit log unavailable"


class EntryNotFound(HubError):
    status = 404
    slug = "entry-not-found"
    title = "No such audit entry"


class InvalidTreeRequest(HubError):
    """A proof or root asked of a tree the log does not have (RFC 9162 §2.1.3, §2.1.4)."""

    status = 400
    slug = "invalid-tree-request"
    title = "No such tree or proof"


class AuditLogDamaged(HubError):
    """A stored leaf or subtree hash that a root or proof needs is missing: the log is
    damaged, which is the operators' fault, never the caller's (``onceonly audit
    check-nodes`` finds the damage)."""

    status = 500
    slug = "audit-log-damaged"
    title = "The audit log is damaged"
