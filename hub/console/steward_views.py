"""What the stewards' pages show and check, decided without I/O: the checks of their
forms, the order of an inbox, and the words for a refusal of the hub's services.

The checks here are only those a form needs before it is worth sending (a reason
given, a field chosen); every rule about who may do what, and what a change may be,
is the services' own (``access.workflow``, ``access.service``, ``registry.service``).
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from onceonly.hub.access.exceptions import NotShared
from onceonly.hub.access.schemas import AccessRequestOut
from onceonly.hub.console.views import HIDDEN_CHARACTERS, N_, FieldError
from onceonly.hub.kit.nul import body_nul
from onceonly.hub.kit.problems import HubError
from onceonly.hub.kit.strict import display_text_problem
from onceonly.hub.kit.untrusted_json import JsonTooDeep, UnsafeJson, load_json
from onceonly.hub.registry.exceptions import ItemRetired
from onceonly.hub.registry.schemas import ItemDocument, ItemOut

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
# A check ("Check", "Check compatibility") changes nothing: its refusal is a verdict.
CHECK_REFUSED: Final = N_("The registry would refuse this. Nothing was changed.")


@dataclass(frozen=True)
class Refusal:
    """A service's refusal as a page shows it: the summary's entry and the hub's detail."""

    error: FieldError
    detail: str


def refusal(error: HubError, *, field: str, checking: bool = False) -> Refusal:
    """``error`` as the page's error summary, linked to ``field``; ``checking``: the
    refusal is the verdict of a check, which changed nothing."""
    fallback = CHECK_REFUSED if checking else REFUSED
    return Refusal(FieldError(field, REFUSALS.get(error.slug, fallback)), error.detail)


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
    if display_text_problem(reason, lines=True) is not None:
        return [FieldError(field, HIDDEN_CHARACTERS)]
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
        elif display_text_problem(self.purpose_text, lines=True) is not None:
            found.append(FieldError("purpose_text", HIDDEN_CHARACTERS))
        if not self.legal_basis:
            found.append(FieldError("legal_basis", N_("Enter the legal basis")))
        elif len(self.legal_basis) > REASON_LIMIT:
            found.append(FieldError("legal_basis", N_("Use 2000 characters or fewer")))
        elif display_text_problem(self.legal_basis, lines=True) is not None:
            found.append(FieldError("legal_basis", HIDDEN_CHARACTERS))
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


# What a page may be answered with after a change (post/redirect/get): ``?done=<code>``,
# shown by views.notice.
NOTICES: Final = {
    "request-sent": N_("Your request is sent. The owner's stewards decide, by its deadline."),
    "approved": N_("The request is approved: the department may use the ticked fields."),
    "refused": N_("The request is refused. The department that asked reads your reason."),
    "withdrawn": N_("The request is withdrawn."),
    "revoked": N_("The grant is revoked. The department's next query is refused."),
    "item-registered": N_("The item is registered: it is in the catalogue."),
    "item-registered-waiting": N_(
        "The item is registered: it is in the catalogue. It starts as shared after"
        " approval; opening it to every department waits for an administrator's decision."
    ),
    "version-registered": N_("The new version is registered: it is the item's latest version."),
    "deprecated": N_("The item is deprecated: it is still served, marked as deprecated."),
    "retired": N_("The item is retired: every query for it is refused from now on."),
}

# The lifecycle changes the lifecycle page offers, by the state the item is in: the
# registry's transitions (registry.service.change_lifecycle) less asking for the state
# the item is in already, which changes nothing and so needs no confirmation.
_LIFECYCLE_OFFERED: Final = {
    "deprecated": frozenset({"active"}),
    "retired": frozenset({"active", "deprecated"}),
}


def offers_lifecycle(now: str, wanted: str) -> bool:
    """Whether the lifecycle page offers an item that is ``now`` to become ``wanted``."""
    return now in _LIFECYCLE_OFFERED.get(wanted, frozenset())


def closed_to_requests(item: ItemOut) -> HubError | None:
    """Why no department may ask for ``item`` at all, as ``access.workflow`` refuses a
    request for it (retired, then never shared); None: it may be asked for."""
    if item.lifecycle == "retired":
        return ItemRetired(f"data item {item.id!r} is retired and no longer served")
    if item.sharing_class == "none":
        return NotShared(f"data item {item.id!r} has sharing class 'none' and is never shared")
    return None


@dataclass(frozen=True)
class Names:
    """The words a request's or grant's page shows for its codes, as the ask form and
    the catalogue show them: the item's title, the purpose's title (from the purpose
    list) and each field's title (from the item's schema). A code without a title is
    shown as itself."""

    item: str = ""
    purposes: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, str] = field(default_factory=dict)

    def purpose_title(self, code: str) -> str:
        return self.purposes.get(code, "")

    def field_title(self, name: str) -> str:
        return self.fields.get(name, "")


# --- the register form and the version form: their fields, as the API's document ------

SCHEMA_NOT_JSON_AT: Final = N_(
    "The schema is not valid JSON: %(problem)s at line %(line)d, column %(column)d"
)
SCHEMA_NOT_JSON: Final = N_("The schema is not valid JSON: %(problem)s")
# Python's own words for what is wrong, in the console's (translated: an outside review
# found them in English on the Chinese pages); another keeps SCHEMA_NOT_JSON_AT
_JSON_PROBLEMS: Final = {
    "Expecting value": N_(
        "The schema is not valid JSON: a value is missing at line %(line)d, column %(column)d"
    ),
    "Expecting property name enclosed in double quotes": N_(
        "The schema is not valid JSON: a name in double quotes is missing at line"
        " %(line)d, column %(column)d"
    ),
    "Expecting ':' delimiter": N_(
        "The schema is not valid JSON: a colon (:) is missing at line %(line)d, column %(column)d"
    ),
    "Expecting ',' delimiter": N_(
        "The schema is not valid JSON: a comma (,) is missing at line %(line)d, column %(column)d"
    ),
    "Unterminated string starting at": N_(
        "The schema is not valid JSON: the text in quotes that starts at line %(line)d,"
        " column %(column)d has no closing quote"
    ),
    "Invalid control character at": N_(
        "The schema is not valid JSON: a line break or other control character inside"
        " quotes at line %(line)d, column %(column)d"
    ),
    "Extra data": N_(
        "The schema is not valid JSON: there is more after its end, at line %(line)d,"
        " column %(column)d"
    ),
    "Invalid \\escape": N_(
        "The schema is not valid JSON: a backslash that starts no escape JSON knows at"
        " line %(line)d, column %(column)d"
    ),
}


def _schema_error(message: str, **values: str | int) -> FieldError:
    return FieldError("schema", message, tuple(values.items()))


def schema_errors(
    text: str, *, max_bytes: int, max_depth: int
) -> tuple[dict[str, Any], list[FieldError]]:
    """The pasted schema, parsed under the API's JSON limits (``kit.jsonbody``'s: size,
    NUL, depth, duplicate keys), or what is wrong with it in words for the schema field:
    where, for text that is not JSON at all."""
    if not text.strip():
        return {}, [_schema_error(N_("Paste the item's JSON Schema"))]
    raw = text.encode()
    if len(raw) > max_bytes:
        return {}, [
            _schema_error(N_("The schema must be %(limit)d bytes or fewer"), limit=max_bytes)
        ]
    if body_nul(raw) is not None:
        return {}, [_schema_error(N_("The schema must not contain the character U+0000"))]
    try:
        json.loads(text)  # only for where a syntax error is
    except json.JSONDecodeError as error:
        known = _JSON_PROBLEMS.get(error.msg)
        if known is not None:
            return {}, [_schema_error(known, line=error.lineno, column=error.colno)]
        at: dict[str, str | int] = {
            "problem": error.msg,
            "line": error.lineno,
            "column": error.colno,
        }
        return {}, [_schema_error(SCHEMA_NOT_JSON_AT, **at)]
    except RecursionError:
        pass  # too deep: load_json says so
    try:
        parsed = load_json(text, max_depth=max_depth)
    except JsonTooDeep:
        message = N_("The schema is nested deeper than %(depth)d levels")
        return {}, [_schema_error(message, depth=max_depth)]
    except UnsafeJson as error:  # a duplicate key
        problem = str(error).removeprefix("not valid JSON: ")
        return {}, [_schema_error(SCHEMA_NOT_JSON, problem=problem)]
    if not isinstance(parsed, dict):
        return {}, [_schema_error(N_("The schema must be a JSON object, in { and }"))]
    return parsed, []


# What to do about a member of the API's item document that the form got wrong; by the
# member (its first place in pydantic's ``loc``), with the form's field it is typed in.
_DOCUMENT_ERRORS: Final = {
    "id": FieldError(
        "id",
        N_(
            "Enter an item id of lower-case words joined by dots, like"
            " person.residential-address (letters a to z, digits and hyphens)"
        ),
    ),
    "title": FieldError("title", N_("Enter a title of 200 characters or fewer")),
    "description": FieldError("description", N_("Use 4000 characters or fewer")),
    "owner": FieldError("owner", N_("Choose the owner department from the list")),
    "sharing_class": FieldError("sharing_class", N_("Choose how the item is shared")),
    "classification": FieldError("classification", N_("Choose a classification")),
    "legal_basis": FieldError("legal_basis", N_("Enter the legal basis, 2000 characters or fewer")),
    "tags": FieldError("tags", N_("Enter 20 tags or fewer, each 64 characters or fewer")),
    "compatibility": FieldError("compatibility", N_("Choose a compatibility mode")),
}
_REFERENCE_ERROR: Final = FieldError("legal_reference", N_("Use 500 characters or fewer"))


def _document_errors(invalid: ValidationError) -> list[FieldError]:
    """The form's fields that ``invalid`` names, each once, in the form's order."""
    found: dict[str, FieldError] = {}
    for error in invalid.errors(include_input=False):
        place = [str(part) for part in error["loc"]]
        hidden = error["type"] == "value_error"  # the display-text rule (decision 0072)
        if place[:2] == ["legal_basis", "reference"]:
            reference = FieldError("legal_reference", HIDDEN_CHARACTERS)
            found["legal_reference"] = reference if hidden else _REFERENCE_ERROR
        elif place and place[0] in _DOCUMENT_ERRORS:
            known = _DOCUMENT_ERRORS[place[0]]
            found[known.field] = FieldError(known.field, HIDDEN_CHARACTERS) if hidden else known
    return [found[name] for name in REGISTER_FIELDS if name in found]


def item_document(
    form: Mapping[str, str], *, max_bytes: int, max_depth: int
) -> tuple[ItemDocument | None, list[FieldError]]:
    """The register form as the API's document (``PUT /v1/admin/items/{id}``'s body), or
    every field it gets wrong at once, the schema's problem last."""
    schema, schema_problems = schema_errors(
        form.get("schema", ""), max_bytes=max_bytes, max_depth=max_depth
    )
    data = {
        "id": form.get("id", "").strip(),
        "title": form.get("title", "").strip(),
        "description": form.get("description", "").strip(),
        "owner": form.get("owner", ""),
        "sharing_class": form.get("sharing_class", ""),
        "classification": form.get("classification", ""),
        "legal_basis": {
            "text": form.get("legal_basis", "").strip(),
            "reference": form.get("legal_reference", "").strip(),
        },
        "tags": tags_of(form.get("tags", "")),
        "compatibility": form.get("compatibility", "BACKWARD"),
        "schema": schema,
    }
    try:
        document = ItemDocument.model_validate(data)
    except ValidationError as invalid:
        return None, _document_errors(invalid) + schema_problems
    return (None if schema_problems else document), schema_problems
