"""What the stewards' pages show and check, decided without I/O: the checks of their
forms, the order of an inbox, and the words for a refusal of the hub's services.

The checks here are only those a form needs before it is worth sending (a reason
given, a field chosen); every rule about who may do what, and what a change may be,
is the services' own (``access.workflow``, ``access.service``, ``registry.service``).
"""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from onceonly.hub.access.schemas import AccessRequestOut
from onceonly.hub.console.views import N_, FieldError
from onceonly.hub.kit.problems import HubError

REASON_LIMIT: Final = 2000  # the API's (access.schemas: RefuseIn, RevokeIn, ApproveIn)
FIELD_PREFIX: Final = "field-"

# A refusal of a service, in words a steward understands (the hub's detail, in
# English, is shown beside it); by the problem's slug (onceonly.hub.kit.problems).
REFUSALS: Final = {
    "forbidden": N_("Your roles do not allow this change"),
    "not-steward": N_("You are not a steward of the department that owns this item"),
    "request-not-found": N_("There is no such access request, or it is not yours to see"),
    "request-not-pending": N_("This request has been decided or withdrawn already"),
    "grant-not-found": N_("There is no such grant, or it is not yours to see"),
    "grant-not-active": N_("This grant is no longer active"),
    "duplicate-request": N_("A request for this item and purpose is waiting for a decision"),
    "item-not-shared": N_("This item is not shared"),
    "item-retired": N_("This item is retired"),
    "unknown-item": N_("There is no such data item"),
    "incompatible-version": N_("The new schema is not compatible with the earlier versions"),
    "compatibility-not-judged": N_(
        "The registry cannot judge whether the new schema is compatible, so it refuses it"
    ),
    "invalid-schema": N_("The schema or an example is not acceptable"),
    "registry-conflict": N_("The registry refused this change"),
    "unknown-department": N_("There is no such department"),
    "unknown-purpose": N_("Choose a purpose from the list"),
}
REFUSED: Final = N_("The hub refused this change")


@dataclass(frozen=True)
class Refusal:
    """A service's refusal as a page shows it: the summary's entry and the hub's detail."""

    error: FieldError
    detail: str


def refusal(error: HubError, *, field: str) -> Refusal:
    """``error`` as the page's error summary, linked to ``field``."""
    return Refusal(FieldError(field, REFUSALS.get(error.slug, REFUSED)), error.detail)


def chosen_fields(form: dict[str, str], offered: list[str]) -> list[str]:
    """The fields whose checkboxes were ticked (``field-N`` = the field's name), in the
    order offered; a name that was not offered is ignored."""
    ticked = {value for name, value in form.items() if name.startswith(FIELD_PREFIX)}
    return [name for name in offered if name in ticked]


def reason_errors(reason: str, *, field: str, required: bool) -> list[FieldError]:
    if required and not reason:
        return [FieldError(field, N_("Enter the reason"))]
    if len(reason) > REASON_LIMIT:
        return [FieldError(field, N_("The reason must be 2000 characters or fewer"))]
    return []


def approval_errors(*, fields: list[str], reason: str) -> list[FieldError]:
    errors = []
    if not fields:
        errors.append(FieldError("field-0", N_("Choose at least one field to approve")))
    return errors + reason_errors(reason, field="approve-reason", required=False)


@dataclass(frozen=True)
class RequestForm:
    """The access request form's values, as the consumer's steward typed them."""

    consumer: str = ""
    purpose: str = ""
    purpose_text: str = ""
    legal_basis: str = ""

    def errors(
        self, *, fields: list[str], consumers: list[str], purposes: list[str]
    ) -> list[FieldError]:
        found = []
        if self.consumer not in consumers:
            found.append(FieldError("consumer", N_("Choose the department that asks")))
        if self.purpose not in purposes:
            found.append(FieldError("purpose", N_("Choose a purpose from the list")))
        if not self.purpose_text:
            found.append(FieldError("purpose_text", N_("Say why your department needs it")))
        elif len(self.purpose_text) > REASON_LIMIT:
            found.append(FieldError("purpose_text", N_("Use 2000 characters or fewer")))
        if not self.legal_basis:
            found.append(FieldError("legal_basis", N_("Enter the legal basis")))
        elif len(self.legal_basis) > REASON_LIMIT:
            found.append(FieldError("legal_basis", N_("Use 2000 characters or fewer")))
        if not fields:
            found.append(FieldError("field-0", N_("Choose at least one field")))
        return found


def waiting_first(requests: list[AccessRequestOut]) -> list[AccessRequestOut]:
    """Pending requests first, the earliest deadline first; then the decided ones,
    the latest first."""
    pending = sorted((r for r in requests if r.status == "pending"), key=lambda r: r.answer_due)
    done = sorted(
        (r for r in requests if r.status != "pending"), key=lambda r: r.requested_at, reverse=True
    )
    return pending + done


def when(moment: datetime | None) -> str:
    """A moment as pages write it (UTC, to the minute)."""
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else ""


def schema_text(schema: dict[str, Any]) -> str:
    """A schema as the version form shows it, ready to edit."""
    return json.dumps(schema, indent=2, ensure_ascii=False)


def tags_of(text: str) -> list[str]:
    """The tags typed as a comma-separated list (blanks dropped)."""
    return [tag.strip() for tag in text.split(",") if tag.strip()]


REGISTER_FIELDS: Final = (
    "id",
    "title",
    "description",
    "owner",
    "sharing_class",
    "classification",
    "legal_basis",
    "legal_reference",
    "tags",
    "compatibility",
    "schema",
)
ITEM_EXISTS: Final = FieldError(
    "id", N_("An item with this id exists: add a new version on its page instead")
)
REQUEST_STATUSES: Final = {
    "pending": N_("Waiting for a decision"),
    "approved": N_("Approved"),
    "refused": N_("Refused"),
    "withdrawn": N_("Withdrawn"),
}
GRANT_STATUSES: Final = {
    "active": N_("Active"),
    "expired": N_("Expired"),
    "revoked": N_("Revoked"),
}
