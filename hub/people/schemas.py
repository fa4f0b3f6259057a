"""People API bodies."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from onceonly.adapters import subject_problem
from onceonly.hub.kit.strict import STRICT_INPUT, DisplayName
from onceonly.hub.registry.schemas import DEPARTMENT_ID_PATTERN

USERNAME_PATTERN = r"^[a-z][a-z0-9._-]{1,63}$"
# Names the hub itself records as who acted (``decided_by``, ``revoked_by``, the audit
# log's ``person``): "hub" for automatic approvals (onceonly.hub.access.workflow.HUB_DECIDER),
# "break-glass" for the emergency token (onceonly.hub.people.principal.BREAK_GLASS). No person
# may be given one, so that a record naming one of them always means the hub or that
# token. "system" and "administrator" (the break-glass token's audited client name)
# are kept back too.
RESERVED_USERNAMES = frozenset({"hub", "break-glass", "system", "administrator"})


OIDC_SUBJECT_RULE = (
    "The provider's subject (sub) for this person, spelt as the hub takes an identifier"
    " (decisions 0061 and 0072): no white space at either end, no control, invisible format"
    " (zero-width, bidirectional control), default-ignorable, unassigned or private-use"
    " character, no space other than U+0020, no decimal digit other than ASCII 0-9, in"
    " Unicode normalization form C and unchanged by NFKC; refused, not normalized"
)


def _an_identifier(subject: str) -> str:
    """``subject`` if it is spelt as an identifier (the subject rule: one spelling, nothing
    unseen); the reason never quotes it."""
    problem = subject_problem(subject)
    if problem is not None:
        raise ValueError(problem)
    return subject


OidcSubject = Annotated[
    str,
    Field(min_length=1, max_length=255, description=OIDC_SUBJECT_RULE),
    AfterValidator(_an_identifier),
]


class RoleIn(BaseModel):
    model_config = STRICT_INPUT

    role: Literal["administrator", "steward", "auditor"]
    department: str | None = Field(default=None, pattern=DEPARTMENT_ID_PATTERN)

    @model_validator(mode="after")
    def _department_for_stewards_only(self) -> "RoleIn":
        if (self.role == "steward") != (self.department is not None):
            raise ValueError("a steward names a department; other roles do not")
        return self


class RoleOut(BaseModel):
    role: str
    department: str | None = None


class PersonIn(BaseModel):
    """An account, as an administrator creates or changes it. A password (local sign-in)
    or an OpenID Connect identity (or both). Members left out keep their value (a new
    account: no roles, active); ``roles`` given replace the person's roles."""

    model_config = STRICT_INPUT

    display_name: DisplayName = Field(default="", max_length=200)
    password: str | None = Field(default=None, min_length=1, max_length=256)
    oidc_subject: OidcSubject | None = None
    roles: list[RoleIn] | None = Field(default=None, max_length=50)
    status: Literal["active", "disabled"] | None = None
    reset_totp: bool = Field(
        default=False, description="Remove the person's one-time-code enrolment (lost device)"
    )


class PersonOut(BaseModel):
    username: str
    display_name: str
    status: str
    roles: list[RoleOut]
    sign_in: list[str]  # "password", "totp", "oidc"


class PersonList(BaseModel):
    people: list[PersonOut]


class SignInIn(BaseModel):
    model_config = STRICT_INPUT

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    totp: str | None = Field(default=None, max_length=10)


class SessionOut(BaseModel):
    """A sign-in: the bearer token (shown once) and until when it holds."""

    token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_at: datetime
    person: PersonOut


class PasswordIn(BaseModel):
    model_config = STRICT_INPUT

    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class TotpEnrolIn(BaseModel):
    """Setting up one-time codes needs the password, not only a session."""

    model_config = STRICT_INPUT

    password: str = Field(min_length=1, max_length=256)


class TotpEnrolment(BaseModel):
    secret: str
    otpauth_uri: str


class TotpConfirmIn(BaseModel):
    model_config = STRICT_INPUT

    code: str = Field(min_length=6, max_length=10)
