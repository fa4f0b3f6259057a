"""Who may read the content of which audit entry (DESIGN.md, "Audit log": public and
private). Pure: the route works out the reader, the rule decides entry by entry.

The log is public in its shape: anyone may read checkpoints, leaf hashes and proofs.
Its content (who, about whom, why) is personal data:

- an **auditor** (a person with the auditor role) reads every entry;
- a **department**, through a client with ``audit:read``, reads the entries that name
  it: those it is the acting department of, and the record queries made of the items
  it owns (it served them);
- the **citizen portal** reads a subject's own accesses through ``/v1/citizen``;
- anyone else reads leaf hashes only.

docs/audit.md has the whole matrix, route by caller.
"""

from dataclasses import dataclass, field

# Entry actions whose content the owner of the entry's item may read: the owner's
# adapter served the record, so the entry is about its own act.
OWNER_VISIBLE_ACTIONS = frozenset({"record.query"})


@dataclass(frozen=True)
class Reader:
    """A caller of the audit routes, as far as entry content goes."""

    auditor: bool = False
    department: str | None = None
    owned_items: frozenset[str] = field(default_factory=frozenset)

    @property
    def anonymous(self) -> bool:
        return not self.auditor and self.department is None

    def may_read(self, *, department: str | None, action: str, item: str | None) -> bool:
        """Whether this reader may see the content of an entry with these columns."""
        if self.auditor:
            return True
        if self.department is None:
            return False
        if department == self.department:
            return True
        return action in OWNER_VISIBLE_ACTIONS and item in self.owned_items


PUBLIC = Reader()
AUDITOR = Reader(auditor=True)
