"""What the console's pages show, decided without I/O: the navigation a person's roles
open, the fields of a schema as rows of a table, and the checks of the pages' inputs.

Messages are English source strings, marked with :func:`N_` for extraction (Babel's
``-k N_``) and translated where the page is rendered.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from onceonly.hub.people.principal import Principal
from onceonly.hub.people.schemas import PersonOut
from onceonly.hub.registry.schemas import DEPARTMENT_ID_PATTERN, ITEM_ID_PATTERN


def N_(message: str) -> str:
    """Mark ``message`` for translation; it is translated when the page is rendered."""
    return message


@dataclass(frozen=True)
class FieldError:
    """One entry of a form's error summary: the field's id and what to do, with the
    values its ``%(name)s`` placeholders take (filled in after it is translated)."""

    field: str
    message: str
    values: tuple[tuple[str, str | int], ...] = ()


# A field's text that the API's display-text rule refuses (onceonly.hub.kit.strict, 0072)
HIDDEN_CHARACTERS: Final = N_(
    "Remove the invisible characters, such as direction marks and zero-width spaces"
)


DONE_COOKIE = "onceonly-done"
"""Set by the redirect after a change (pages.redirect) to the ``?done=`` code it asks
for: a notice is shown only to the browser that made the change, never for a link."""
DONE_SECONDS = 60


def notice(notices: Mapping[str, str], done: str, cookies: Mapping[str, str]) -> str | None:
    """The success message (one of ``notices``) a redirect after a change asked for with
    ``?done=<code>``, or None: an unknown code shows none, nothing of the query is ever
    shown, and a code this browser's redirect did not set (:data:`DONE_COOKIE`: a link
    someone sent) shows none, so the hub never announces a change that did not happen."""
    if not done or cookies.get(DONE_COOKIE) != done:
        return None
    return notices.get(done)


@dataclass(frozen=True)
class NavigationItem:
    label: str
    href: str


CATALOGUE: Final = NavigationItem(N_("Catalogue"), "/catalogue")
ACCOUNT: Final = NavigationItem(N_("Your account"), "/account")
STEWARD_PAGES: Final = (  # hub/console/steward.py
    NavigationItem(N_("Requests to us"), "/inbox"),
    NavigationItem(N_("Our requests"), "/outbox"),
    NavigationItem(N_("Grants"), "/grants"),
    NavigationItem(N_("Register an item"), "/register"),
)
ADMINISTRATOR_PAGES: Final = (  # hub/console/admin.py
    NavigationItem(N_("Departments"), "/admin/departments"),
    NavigationItem(N_("Clients"), "/admin/clients"),
    NavigationItem(N_("People"), "/admin/people"),
    NavigationItem(N_("Dead letters"), "/admin/dead-letters"),
    NavigationItem(N_("Signing keys"), "/admin/signing-keys"),
)
AUDITOR_PAGES: Final = (  # hub/console/auditor.py
    NavigationItem(N_("Audit log"), "/audit"),
    NavigationItem(N_("Checkpoints"), "/checkpoints"),
)
EFFICIENCY: Final = NavigationItem(N_("Efficiency"), "/efficiency")  # auditors, administrators


def navigation(principal: Principal) -> list[NavigationItem]:
    """The pages a person's roles open. Every role reads the catalogue, which is public
    (decision 0006); the pages of each role's work come with the next parts of issue 13
    and are added here by the role the API asks for (``Principal.require_*``)."""
    pages = [CATALOGUE]
    if principal.stewards:
        pages += STEWARD_PAGES
    if principal.administrator:
        pages += ADMINISTRATOR_PAGES
    if principal.auditor:
        pages += AUDITOR_PAGES
    if principal.auditor or principal.administrator:
        pages.append(EFFICIENCY)
    return [*pages, ACCOUNT] if principal.person_id is not None else pages


# Who may use a page, by its path, as the page that refuses another role says it
# (templates/macros.html, not_allowed); the first that matches. The rules themselves are
# the API's (Principal.require_*, access.policy), checked where each page is served.
_AUDIENCES: Final = (
    (r"/audit(/|$)", N_("The audit log is for auditors.")),
    (r"/efficiency$", N_("The efficiency dashboard is for auditors and administrators.")),
    (r"/admin/", N_("The administration pages are for administrators.")),
    (r"/(inbox|outbox)$", N_("A department's requests are for its data stewards.")),
    (
        r"/requests/",
        N_(
            "An access request is for the data stewards of the two departments it names,"
            " and for auditors."
        ),
    ),
    (
        r"/grants/",
        N_("A grant is for the data stewards of the two departments it names, and for auditors."),
    ),
    (r"/grants$", N_("A department's grants are for its data stewards.")),
    (r"/register$", N_("Registering a data item is for data stewards.")),
    (
        r"/catalogue/[^/]+/request$",
        N_("Asking for a data item is for the data stewards of the other departments."),
    ),
    (
        r"/catalogue/[^/]+/",
        N_("Changing a data item is for the data stewards of the department that owns it."),
    ),
)
NOT_YOUR_ROLE: Final = N_("This page is for other roles than yours.")


def who_may_use(path: str) -> str:
    """Who may use the page at ``path`` (with or without its query), in words (an N_
    message)."""
    bare = path.split("?", 1)[0]
    for pattern, audience in _AUDIENCES:
        if re.match(pattern, bare):
            return audience
    return NOT_YOUR_ROLE


def role_names(account: PersonOut) -> list[tuple[str, str | None]]:
    """The account's roles as (role, department or None), for the header and account page."""
    return [(role.role, role.department) for role in account.roles]


# Values the registry stores as codes, in words a reader understands.
SHARING_CLASSES: Final = {
    "unconditional": N_("Any department, for a stated purpose"),
    "conditional": N_("After the owner approves a request"),
    "none": N_("Not shared"),
}
CLASSIFICATIONS: Final = {
    "public": N_("Public"),
    "internal": N_("Internal"),
    "personal": N_("Personal"),
    "sensitive-personal": N_("Sensitive personal"),
}
LIFECYCLES: Final = {
    "active": N_("Active"),
    "deprecated": N_("Deprecated"),
    "retired": N_("Retired"),
}
ROLES: Final = {
    "administrator": N_("Administrator"),
    "auditor": N_("Auditor"),
    "steward": N_("Steward"),
}
SIGN_IN_METHODS: Final = {
    "password": N_("Password"),
    "totp": N_("One-time codes"),
    "oidc": N_("OpenID Connect"),
}


# --- sign-in -----------------------------------------------------------------------

_CODE = re.compile(r"^[0-9]{6}$")


def sign_in_errors(*, username: str, password: str, code: str) -> list[FieldError]:
    """What a sign-in form lacks before it is worth checking (GOV.UK's error messages:
    say what to do). The limits are the API's (``people.schemas.SignInIn``)."""
    errors = []
    if not username:
        errors.append(FieldError("username", N_("Enter your username")))
    elif len(username) > 64:
        errors.append(FieldError("username", N_("Username must be 64 characters or fewer")))
    if not password:
        errors.append(FieldError("password", N_("Enter your password")))
    elif len(password) > 256:
        errors.append(FieldError("password", N_("Password must be 256 characters or fewer")))
    if code and not _CODE.match(code):
        errors.append(FieldError("code", N_("Enter the 6-digit code from your authenticator app")))
    return errors


# --- catalogue ---------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogueSearch:
    """The catalogue's filters, as the page's GET form sends them ("" = not given)."""

    q: str = ""
    owner: str = ""
    tag: str = ""

    def errors(self) -> list[FieldError]:
        found = []
        if len(self.q) > 200:
            found.append(FieldError("q", N_("Search text must be 200 characters or fewer")))
        if self.owner and not re.match(DEPARTMENT_ID_PATTERN, self.owner):
            found.append(FieldError("owner", N_("Choose an owner department from the list")))
        if len(self.tag) > 64:
            found.append(FieldError("tag", N_("Choose a tag from the list")))
        return found


def is_item_id(candidate: str) -> bool:
    return len(candidate) <= 128 and re.match(ITEM_ID_PATTERN, candidate) is not None


@dataclass(frozen=True)
class FieldRow:
    """One field of an item's schema, as its page's table shows it."""

    name: str
    title: str
    description: str
    type: str
    required: bool
    personal: bool


def _type_of(node: Any) -> str:
    if not isinstance(node, dict):
        return ""
    if "$ref" in node:
        return str(node["$ref"]).rsplit("/", 1)[-1]
    kind = node.get("type", "")
    kind = " | ".join(map(str, kind)) if isinstance(kind, list) else str(kind)
    if "format" in node:
        kind = f"{kind} ({node['format']})" if kind else str(node["format"])
    if "enum" in node:
        kind = f"{kind}: {', '.join(map(str, node['enum']))}" if kind else "enum"
    return kind


def field_rows(schema: dict[str, Any], *, fields: list[str], personal: list[str]) -> list[FieldRow]:
    """The top-level fields of a version (what a grant allows one by one), in the
    schema's order; ``fields`` and ``personal`` are the registry's own lists
    (``registry.service.list_versions``), so "personal" here is what the registry
    says it is, ``x-personal`` reached through ``$ref`` too."""
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    required = schema.get("required")
    required = set(required) if isinstance(required, list) else set()
    ordered = [name for name in properties if name in fields]
    ordered += [name for name in fields if name not in properties]
    rows = []
    for name in ordered:
        node = properties.get(name)
        node = node if isinstance(node, dict) else {}
        rows.append(
            FieldRow(
                name=name,
                title=str(node.get("title", "")),
                description=str(node.get("description", "")),
                type=_type_of(node),
                required=name in required,
                personal=name in personal,
            )
        )
    return rows
