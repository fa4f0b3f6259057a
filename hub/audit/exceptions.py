from onceonly.hub.kit.problems import HubError
from onceonly.hub.kit.rate_limit import retry_after


class AuditUnavailable(HubError):
    """The entry could not be committed, so the request it audits must fail."""

    status = 503
    slug = "audit-unavailable"
    title = "Audit log unavailable"


class SubjectSearchesThrottled(HubError):
    """An auditor searched the log by subject more often than the hub allows
    (``audit_subject_searches_per_hour``, decision 0086): 429 with ``Retry-After``."""

    status = 429
    slug = "subject-searches-throttled"
    title = "Too many searches by subject"

    def __init__(self, *, wait: float, per_hour: int) -> None:
        seconds = retry_after(wait)
        super().__init__(
            f"more than {per_hour} subjects searched in an hour; search another in"
            f" {seconds} s (those searched in the last hour may be searched again)",
            headers={"Retry-After": str(seconds), "Cache-Control": "no-store"},
        )


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
