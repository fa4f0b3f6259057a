"""Who may read the content of which audit entry (DESIGN.md, "Audit log": public and
private). Pure: the route works out the reader, the rule decides entry by entry.

The log is public in its shape: anyone may read checkpoints, leaf hashes and proofs.
Its content (who, about whom, why) is personal data:

- an **auditor** (a person with the auditor role) reads every entry;
- a **department**, through a client with ``audit:read``, reads the entries that name
  it: what its own clients did, the events delivered to it, and the record queries
  its adapter was asked to answer (see :meth:`Reader.may_read`); of a request it was
  not entitled to make (refused before the hub called the owner, a delivery refused
  by the entitlement check) the entry holds only a commitment to the subject's
  pseudonym, never the pseudonym (decision 0069, ``leaves.subject_commitment``);
- the **citizen portal** reads a subject's own accesses through ``/v1/citizen``;
- anyone else reads leaf hashes only.

docs/audit.md has the whole matrix, route by caller.
"""

from dataclasses import dataclass
from typing import Any

# What a department's clients do themselves carries their client id; of the hub's acts
# toward a department without one, only a delivery of an event to it is its to read.
ACTS_TOWARD_THE_DEPARTMENT = frozenset({"event.deliver"})


@dataclass(frozen=True)
class Reader:
    """A caller of the audit routes, as far as entry content goes."""

    auditor: bool = False
    department: str | None = None

    @property
    def anonymous(self) -> bool:
        return not self.auditor and self.department is None

    def may_read(self, entry: dict[str, Any]) -> bool:
        """Whether this reader may see the content of ``entry`` (the decoded leaf).

        A department reads what its own clients did (the entry names the department
        and a client, and no person: every entry a client's request makes names both,
        and a person's, the break-glass token's included, names the person), the events
        delivered to it, and the record queries its adapter was asked to answer
        (``owner``: the hub notes it when it calls the owner, so a query refused
        before that never names the owner). It never reads what people did about it
        (access requests, registry changes), whose entries name staff and carry
        their free text."""
        if self.auditor:
            return True
        if self.department is None:
            return False
        if entry.get("department") == self.department and "person" not in entry:
            return "client" in entry or entry.get("action") in ACTS_TOWARD_THE_DEPARTMENT
        return entry.get("action") == "record.query" and entry.get("owner") == self.department


PUBLIC = Reader()
AUDITOR = Reader(auditor=True)
