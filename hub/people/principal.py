"""Who acts, as a person: roles kept apart, checked on every route.

Roles (docs/access.md):

- ``administrator``: departments, clients and people's accounts;
- ``steward`` of a department: that department's items, its access requests as a
  consumer, and requests for its items as the owner;
- ``auditor``: reads the audit log, requests and grants; changes nothing.

The break-glass principal is the installation's bootstrap administrator token
(``<data_dir>/keys/admin-token``, docs/decisions/0014): it may do what an administrator
and any department's steward may do, but it never approves or refuses access
requests (those are people's decisions) and every use is audited as such.
"""

from dataclasses import dataclass, field
from typing import Literal

from onceonly.hub.kit.problems import HubError

Role = Literal["administrator", "steward", "auditor"]
ROLES: tuple[Role, ...] = ("administrator", "steward", "auditor")
BREAK_GLASS = "break-glass"


class Forbidden(HubError):
    """Signed in, but the role this needs is not the caller's (or not for this department)."""

    status = 403
    slug = "forbidden"
    title = "Not allowed for this role"


@dataclass(frozen=True)
class Principal:
    """A signed-in person (or the break-glass token) and the roles they hold now."""

    name: str
    person_id: str | None = None
    administrator: bool = False
    auditor: bool = False
    stewards: frozenset[str] = field(default_factory=frozenset)
    break_glass: bool = False

    @classmethod
    def emergency(cls) -> "Principal":
        return cls(name=BREAK_GLASS, administrator=True, break_glass=True)

    def stewards_department(self, department: str) -> bool:
        return self.break_glass or department in self.stewards

    def require_administrator(self) -> None:
        if not self.administrator:
            raise Forbidden(f"{self.name!r} is not an administrator")

    def require_auditor(self) -> None:
        """Audit reads: auditors (and the break-glass token, for bootstrap and emergencies)."""
        if not (self.auditor or self.break_glass):
            raise Forbidden(f"{self.name!r} is not an auditor")

    def require_report_reader(self) -> None:
        """The efficiency report (aggregates, never an entry): auditors and administrators."""
        if not (self.auditor or self.administrator):
            raise Forbidden(f"{self.name!r} is neither an auditor nor an administrator")

    def require_steward(self, department: str) -> None:
        if not self.stewards_department(department):
            raise Forbidden(f"{self.name!r} is not a steward of department {department!r}")

    def require_person(self) -> None:
        """Decisions that only a person may take (approving or refusing a request)."""
        if self.break_glass or self.person_id is None:
            raise Forbidden("this decision must be taken by a signed-in person, not a token")

    @property
    def steward_departments(self) -> frozenset[str] | None:
        """The departments whose stewards' rights this principal has (None: every one)."""
        return None if self.break_glass else self.stewards
