"""Registry API bodies, and the item document that schemas/ files hold."""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from onceonly.hub.kit.clock import UtcDatetime
from onceonly.hub.kit.strict import STRICT_INPUT, DisplayName, DisplayText, Statement
from onceonly.hub.registry.compat import Mode

ITEM_ID_PATTERN = r"^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)+$"
# An item id in a route's path.
ItemId = Annotated[str, Path(pattern=ITEM_ID_PATTERN, max_length=128)]
DEPARTMENT_ID_PATTERN = r"^[a-z][a-z0-9-]{1,62}[a-z0-9]$"
CLIENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

SharingClass = Literal["unconditional", "conditional", "none"]
ChangeStatus = Literal["pending", "approved", "refused"]
Classification = Literal["public", "internal", "personal", "sensitive-personal"]
Lifecycle = Literal["active", "deprecated", "retired"]


class _Strict(BaseModel):
    """A request body: no unknown members, no coercion (onceonly.hub.kit.strict)."""

    model_config = STRICT_INPUT


class DepartmentIn(_Strict):
    name: DisplayName = Field(min_length=1, max_length=200)
    description: DisplayText = Field(default="", max_length=2000)
    adapter_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://[^\s]+$")


class DepartmentOut(BaseModel):
    id: str
    name: str
    description: str
    adapter_url: str | None


class DepartmentList(BaseModel):
    departments: list[DepartmentOut]


class ClientIn(_Strict):
    department: str = Field(pattern=DEPARTMENT_ID_PATTERN)
    jwks: dict[str, Any]


class ClientOut(BaseModel):
    client_id: str
    department: str
    status: Literal["active", "disabled"]
    kids: list[str]


class ClientList(BaseModel):
    clients: list[ClientOut]


class LegalBasis(_Strict):
    text: Statement
    reference: DisplayName = Field(default="", max_length=500)


class ItemDocument(_Strict):
    """A data item as a steward writes it: metadata, schema and examples."""

    id: str = Field(pattern=ITEM_ID_PATTERN, max_length=128)
    title: DisplayName = Field(min_length=1, max_length=200)
    description: DisplayText = Field(default="", max_length=4000)
    owner: str = Field(pattern=DEPARTMENT_ID_PATTERN)
    sharing_class: SharingClass
    classification: Classification
    legal_basis: LegalBasis
    retention: DisplayName = Field(default="", max_length=32)
    tags: list[DisplayName] = Field(default_factory=list, max_length=20)
    compatibility: Mode = "BACKWARD"
    json_schema: dict[str, Any] = Field(alias="schema")
    examples: list[dict[str, Any]] = Field(default_factory=list, max_length=20)

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class VersionDocument(_Strict):
    """A new schema version of an existing item, with examples that must validate."""

    json_schema: dict[str, Any] = Field(alias="schema")
    examples: list[dict[str, Any]] = Field(default_factory=list, max_length=20)

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class ItemOut(BaseModel):
    id: str
    title: str
    description: str
    owner: str
    sharing_class: str
    classification: str
    legal_basis: LegalBasis
    retention: str
    tags: list[str]
    compatibility: str
    lifecycle: str
    latest_version: int
    personal_fields: list[str]


class ItemList(BaseModel):
    items: list[ItemOut]


class ItemVersionOut(BaseModel):
    item: str
    version: int
    json_schema: dict[str, Any] = Field(serialization_alias="schema")


class VersionSummary(BaseModel):
    version: int
    fingerprint: str
    personal_fields: list[str]
    fields: list[str]
    created_at: datetime


class VersionList(BaseModel):
    item: str
    latest_version: int
    versions: list[VersionSummary]


class ItemQuery(BaseModel):
    """Catalogue search: every given criterion must hold (``q`` in id, title or description)."""

    q: str | None = None
    owner: str | None = None
    tag: str | None = None
    classification: Classification | None = None
    sharing_class: SharingClass | None = None
    lifecycle: Lifecycle | None = None


class RegistryChangeOut(BaseModel):
    """A change that waits for (or got) a second person's decision."""

    id: str
    item: str
    owner: str
    changes: dict[str, dict[str, str]] = Field(
        description='Each member changed: {"from": ..., "to": ...}'
    )
    status: ChangeStatus
    requested_by: str
    requested_at: UtcDatetime
    decided_by: str | None
    decided_at: UtcDatetime | None
    reason: str | None


class RegistryChangeList(BaseModel):
    changes: list[RegistryChangeOut]


class ApproveChangeIn(_Strict):
    reason: Statement | None = None


class RefuseChangeIn(_Strict):
    reason: Statement
