"""Grant API bodies."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from hub.registry.schemas import DEPARTMENT_ID_PATTERN, ITEM_ID_PATTERN

PURPOSE_PATTERN = r"^[a-z0-9][a-z0-9.-]{0,63}$"


class GrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    consumer: str = Field(pattern=DEPARTMENT_ID_PATTERN)
    item: str = Field(pattern=ITEM_ID_PATTERN, max_length=128)
    purpose: str = Field(pattern=PURPOSE_PATTERN)
    legal_basis: str = Field(min_length=1, max_length=2000)
    fields: list[str] | None = Field(default=None, max_length=200)
    valid_until: datetime | None = None


class GrantOut(BaseModel):
    id: str
    consumer: str
    item: str
    purpose: str
    legal_basis: str
    fields: list[str] | None
    valid_from: datetime
    valid_until: datetime | None
    status: str


class GrantList(BaseModel):
    grants: list[GrantOut]
