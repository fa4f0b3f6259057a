"""Access API bodies: grants, access requests and the purpose list."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from onceonly.hub.kit.strict import STRICT_INPUT, Rfc3339, Statement
from onceonly.hub.registry.schemas import DEPARTMENT_ID_PATTERN, ITEM_ID_PATTERN

PURPOSE_PATTERN = r"^[a-z0-9][a-z0-9.-]{0,63}$"

RequestStatus = Literal["pending", "approved", "refused", "withdrawn"]
GrantStatus = Literal["active", "expired", "revoked"]
Box = Literal["inbox", "outbox"]
FieldList = Annotated[list[str], Field(min_length=1, max_length=200)]


class GrantIn(BaseModel):
    model_config = STRICT_INPUT

    consumer: str = Field(pattern=DEPARTMENT_ID_PATTERN)
    item: str = Field(pattern=ITEM_ID_PATTERN, max_length=128)
    purpose: str = Field(pattern=PURPOSE_PATTERN)
    legal_basis: Statement
    fields: list[str] | None = Field(default=None, max_length=200)
    valid_until: Rfc3339 | None = None


class GrantOut(BaseModel):
    """A grant; ``status`` is computed: ``expired`` once ``valid_until`` has passed."""

    id: str
    consumer: str
    owner: str | None = None
    item: str
    purpose: str
    legal_basis: str
    fields: list[str] | None
    version: int | None = Field(
        description="The item's version the grant was decided on: members a later "
        "version adds, inside granted fields too, are not delivered under it"
    )
    valid_from: datetime
    valid_until: datetime | None
    status: str
    request_id: str | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None


class GrantList(BaseModel):
    grants: list[GrantOut]


class RevokeIn(BaseModel):
    model_config = STRICT_INPUT

    reason: Statement


class AccessRequestIn(BaseModel):
    """A consumer department's request. ``fields``: a subset of the top-level fields;
    ``"all"``: every field of the item's current version, personal ones included;
    None: the current version's fields that are not personal. Each is read against the
    version current at the time of the request, so a later version's new fields are
    never included."""

    model_config = STRICT_INPUT

    consumer: str = Field(pattern=DEPARTMENT_ID_PATTERN)
    item: str = Field(pattern=ITEM_ID_PATTERN, max_length=128)
    purpose: str = Field(pattern=PURPOSE_PATTERN)
    purpose_text: Statement
    legal_basis: Statement
    fields: FieldList | Literal["all"] | None = None
    valid_until: Rfc3339 | None = None


class ApproveIn(BaseModel):
    """The owner's approval: a subset of the requested fields, a period not longer
    than requested (both default to what was asked)."""

    model_config = STRICT_INPUT

    fields: list[str] | None = Field(default=None, min_length=1, max_length=200)
    valid_until: Rfc3339 | None = None
    reason: Statement | None = None


class RenewIn(BaseModel):
    """Renewing a grant: its terms are kept; the words and the end may be new."""

    model_config = STRICT_INPUT

    purpose_text: Statement | None = None
    valid_until: Rfc3339 | None = None


class RefuseIn(BaseModel):
    model_config = STRICT_INPUT

    reason: Statement


class Decision(BaseModel):
    by: str
    at: datetime
    reason: str | None
    fields: list[str] | None = None
    valid_until: datetime | None = None


class AccessRequestOut(BaseModel):
    id: str
    consumer: str
    owner: str
    item: str
    version: int
    purpose: str
    purpose_text: str
    legal_basis: str
    fields: list[str] | None = Field(
        description="As asked; None: the version's fields that are not personal"
    )
    requested_fields: list[str] = Field(description="The fields asked for, spelled out")
    personal_fields: list[str] = Field(description="Those of requested_fields marked x-personal")
    valid_from: datetime
    valid_until: datetime | None
    status: RequestStatus
    requested_by: str
    requested_at: datetime
    answer_due: datetime
    overdue: bool = Field(description="Still pending after answer_due")
    decision: Decision | None
    grant_id: str | None


class AccessRequestList(BaseModel):
    requests: list[AccessRequestOut]


class PurposeOut(BaseModel):
    code: str
    title: str
    description: str


class PurposeListOut(BaseModel):
    purposes: list[PurposeOut]
