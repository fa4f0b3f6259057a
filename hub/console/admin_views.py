"""What the administrators' pages accept and show, decided without I/O: their forms read
into the API's own bodies (``DepartmentIn``, ``PersonIn``, so that the limits are the
API's), the refusals of the services in words, and the signing keys' schedule.

Messages are English source strings marked with ``N_`` and translated where the page
is rendered (docs/console.md, "Languages").
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from pydantic import ValidationError

from onceonly.hub.console import views
from onceonly.hub.console.views import N_, FieldError
from onceonly.hub.kit.keyfiles import MissingKeyError
from onceonly.hub.kit.problems import HubError
from onceonly.hub.people import credentials
from onceonly.hub.people.schemas import RESERVED_USERNAMES, USERNAME_PATTERN, PersonIn, RoleIn
from onceonly.hub.registry.schemas import CLIENT_ID_PATTERN, DEPARTMENT_ID_PATTERN, DepartmentIn
from onceonly.hub.signing_keys import KeyEntry, signing_entry

# What a form may be answered with after a change (POST/redirect/GET): ``?done=<code>``.
NOTICES: Final = {
    "department-saved": N_("The department is saved."),
    "client-disabled": N_("The client is disabled. Its tokens are refused from its next request."),
    "client-enabled": N_("The client is enabled again."),
    "person-saved": N_("The account is saved."),
    "person-disabled": N_("The account is disabled. Its sign-ins have ended."),
    "person-enabled": N_("The account is enabled again."),
    "replayed": N_("The delivery is queued again, from the start of its retry schedule."),
}


def notice(done: str, cookies: Mapping[str, str]) -> str | None:
    """The success message a redirect asked for (views.notice)."""
    return views.notice(NOTICES, done, cookies)


def is_department_id(candidate: str) -> bool:
    return re.match(DEPARTMENT_ID_PATTERN, candidate) is not None


def is_client_id(candidate: str) -> bool:
    return re.match(CLIENT_ID_PATTERN, candidate) is not None


def is_username(candidate: str) -> bool:
    return re.match(USERNAME_PATTERN, candidate) is not None


def is_delivery_id(candidate: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{32}", candidate) is not None


def _errors(
    error: ValidationError, messages: Mapping[tuple[str, str], str], fallback: Mapping[str, str]
) -> list[FieldError]:
    """The body's validation errors as the form's: one per field, in the form's words."""
    found: dict[str, str] = {}
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else ""
        message = messages.get((field, problem["type"]), fallback.get(field))
        if message is not None:
            found.setdefault(field, message)
    return [FieldError(field, message) for field, message in found.items()]


# --- departments ---------------------------------------------------------------------

_DEPARTMENT_MESSAGES: Final = {
    ("name", "string_too_short"): N_("Enter the department's name"),
    ("name", "string_too_long"): N_("Name must be 200 characters or fewer"),
    ("description", "string_too_long"): N_("Description must be 2000 characters or fewer"),
    ("adapter_url", "string_too_long"): N_("Adapter URL must be 500 characters or fewer"),
    ("name", "value_error"): views.HIDDEN_CHARACTERS,
    ("description", "value_error"): views.HIDDEN_CHARACTERS,
}
_DEPARTMENT_FALLBACK: Final = {
    "name": N_("Enter the department's name"),
    "description": N_("Description must be 2000 characters or fewer"),
    "adapter_url": N_("Enter the adapter's URL, starting with https://"),
}


@dataclass(frozen=True)
class DepartmentForm:
    """The department form's fields as typed ("" = left empty)."""

    id: str = ""
    name: str = ""
    description: str = ""
    adapter_url: str = ""

    @classmethod
    def of(cls, form: Mapping[str, str], *, department_id: str = "") -> "DepartmentForm":
        return cls(
            id=department_id or form.get("id", "").strip(),
            name=form.get("name", "").strip(),
            description=form.get("description", "").strip(),
            adapter_url=form.get("adapter_url", "").strip(),
        )

    def body(self) -> DepartmentIn | list[FieldError]:
        """The API's body for this form, or what to correct. The id is checked apart
        (it is the route's path in the API)."""
        errors = []
        if not is_department_id(self.id):
            errors.append(
                FieldError(
                    "id",
                    N_(
                        "Enter an id of 3 to 64 lowercase letters, digits and hyphens,"
                        " starting with a letter"
                    ),
                )
            )
        try:
            body = DepartmentIn(
                name=self.name,
                description=self.description,
                adapter_url=self.adapter_url or None,
            )
        except ValidationError as error:
            return errors + _errors(error, _DEPARTMENT_MESSAGES, _DEPARTMENT_FALLBACK)
        return errors or body


# --- people --------------------------------------------------------------------------

_ROLE_KINDS: Final = ("", "administrator", "auditor", "steward")
DEPARTMENT_FIELD: Final = "department."  # a checkbox per department: "department.<id>"

_PERSON_MESSAGES: Final = {
    ("display_name", "string_too_long"): N_("Name must be 200 characters or fewer"),
    ("password", "string_too_long"): N_("Password must be 256 characters or fewer"),
    ("oidc_subject", "string_too_long"): N_(
        "OpenID Connect subject must be 255 characters or fewer"
    ),
    ("display_name", "value_error"): views.HIDDEN_CHARACTERS,
}
_PERSON_FALLBACK: Final = {
    "display_name": N_("Name must be 200 characters or fewer"),
    "password": N_("Password must be 256 characters or fewer"),
    "oidc_subject": N_("OpenID Connect subject must be 255 characters or fewer"),
    "roles": N_("Choose at least one department for a steward"),
}


@dataclass(frozen=True)
class PersonForm:
    """The account form's fields as typed. The password is never shown again on a page
    (a form answered with errors asks for it anew)."""

    username: str = ""
    display_name: str = ""
    password: str = ""
    oidc_subject: str = ""
    role: str = ""
    departments: tuple[str, ...] = ()
    reset_totp: bool = False

    @classmethod
    def of(cls, form: Mapping[str, str], *, username: str = "") -> "PersonForm":
        departments = tuple(
            sorted(
                name.removeprefix(DEPARTMENT_FIELD)
                for name in form
                if name.startswith(DEPARTMENT_FIELD)
            )
        )
        return cls(
            username=username or form.get("username", "").strip(),
            display_name=form.get("display_name", "").strip(),
            password=form.get("password", ""),
            oidc_subject=form.get("oidc_subject", "").strip(),
            role=form.get("role", ""),
            departments=departments,
            reset_totp=form.get("reset_totp") == "yes",
        )

    def body(self, *, new: bool) -> PersonIn | list[FieldError]:
        """The API's body (``PUT /v1/admin/people/{username}``) for this form, or what to
        correct. The roles given replace the person's; a password given sets it (on an
        existing account, every session then ends: the service's rule)."""
        errors = self._username_errors() if new else []
        errors += self._password_errors(new=new)
        if self.role not in _ROLE_KINDS:
            errors.append(FieldError("role", N_("Choose a role")))
        elif self.role == "steward" and not self.departments:
            errors.append(FieldError("departments", N_("Choose at least one department")))
        try:
            body = PersonIn(
                display_name=self.display_name,
                password=self.password or None,
                oidc_subject=self.oidc_subject or None,
                roles=self._roles(),
                reset_totp=self.reset_totp,
            )
        except ValidationError as error:
            named = {found.field for found in errors}  # one error a field: the first
            more = _errors(error, _PERSON_MESSAGES, _PERSON_FALLBACK)
            return errors + [found for found in more if found.field not in named]
        return errors or body

    def _roles(self) -> list[RoleIn]:
        if self.role == "steward":
            return [RoleIn(role="steward", department=d) for d in self.departments]
        if self.role == "administrator":
            return [RoleIn(role="administrator")]
        if self.role == "auditor":
            return [RoleIn(role="auditor")]
        return []

    def _username_errors(self) -> list[FieldError]:
        if not is_username(self.username):
            return [
                FieldError(
                    "username",
                    N_(
                        "Enter a username of 2 to 64 lowercase letters, digits, dots,"
                        " hyphens or underscores, starting with a letter"
                    ),
                )
            ]
        if self.username in RESERVED_USERNAMES:
            return [FieldError("username", N_("This username is kept for the hub: choose another"))]
        return []

    def _password_errors(self, *, new: bool) -> list[FieldError]:
        if not self.password:
            if new and not self.oidc_subject:
                return [
                    FieldError(
                        "password",
                        N_("Enter a password (or an OpenID Connect subject) for a new account"),
                    )
                ]
            return []
        problem = credentials.password_problem(self.password, username=self.username)
        if problem is not None:
            return [FieldError("password", PASSWORD_PROBLEMS[problem])]
        return []


# The rule a new password breaks (people.credentials, the service's own check), named.
PASSWORD_PROBLEMS: Final = {
    credentials.PasswordProblem.TOO_SHORT: N_("Enter a password of at least 12 characters"),
    credentials.PasswordProblem.TOO_LONG: N_("Enter a password of 256 characters or fewer"),
    credentials.PasswordProblem.CONTAINS_USERNAME: N_(
        "Enter a password that does not contain the username"
    ),
    credentials.PasswordProblem.TOO_FEW_CHARACTERS: N_(
        "Enter a password with more than 3 different characters: this one repeats the same few"
    ),
}


def current_role(roles: list[tuple[str, str | None]]) -> tuple[str, tuple[str, ...]]:
    """An account's roles as the form's fields: the kind, and a steward's departments."""
    kind = roles[0][0] if roles else ""
    return kind, tuple(sorted(d for _, d in roles if d is not None))


# --- what the services refuse, in words ----------------------------------------------

_REFUSALS: Final = {
    "forbidden": N_("Administrators do not change their own account: another administrator does"),
    "adapter-url-not-https": N_(
        "Enter an adapter URL starting with https://: a production hub calls adapters over"
        " HTTPS only"
    ),
    "unknown-department": N_("Choose departments from the list"),
    "client-tokens-outstanding": N_(
        "The client's earlier access tokens may still be alive: enable it once they have"
        " expired, in a few minutes"
    ),
    "invalid-request": N_("The hub refused the change: check every field"),
}


def refusal(error: HubError, *, field: str) -> FieldError:
    """A service's refusal as an error of the form, next to ``field``."""
    return FieldError(field, _REFUSALS.get(error.slug, N_("The hub refused the change")))


# --- signing keys ----------------------------------------------------------------------

KeyState = Literal["signing", "next", "published", "retired"]
KEY_STATES: Final = {
    "signing": N_("Signs now"),
    "next": N_("Next: published, signs from its start"),
    "published": N_("Replaced: still published until it retires"),
    "retired": N_("Retired: no longer published"),
}


@dataclass(frozen=True)
class KeyRow:
    kid: str
    state: KeyState
    active_from: datetime
    retire_at: datetime | None


def _moment(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def key_schedule(entries: list[KeyEntry], now: float) -> list[KeyRow]:
    """Each key of ``state.json`` and where it stands at ``now`` (decision 0010): the one
    that signs (``signing_keys.signing_entry``, the rule the hub signs by), the next
    ones, those replaced but still published, and those retired; newest first."""
    try:
        signing: str | None = signing_entry(entries, now).kid
    except MissingKeyError:  # no key signs now; the schedule is still worth showing
        signing = None
    rows = []
    for entry in sorted(entries, key=lambda e: e.active_from, reverse=True):
        state: KeyState
        if entry.kid == signing:
            state = "signing"
        elif not entry.published(now):
            state = "retired"
        elif entry.active_from > now:
            state = "next"
        else:
            state = "published"
        retire_at = _moment(entry.retire_at) if entry.retire_at is not None else None
        rows.append(KeyRow(entry.kid, state, _moment(entry.active_from), retire_at))
    return rows
