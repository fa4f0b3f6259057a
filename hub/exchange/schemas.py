"""Exchange API bodies (docs/protocol.md §3: a contract)."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub.access.schemas import PURPOSE_PATTERN


class RecordQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(min_length=1, max_length=256)
    purpose: str = Field(pattern=PURPOSE_PATTERN)
    version: int | None = Field(
        default=None, ge=1, le=1_000_000, description="an earlier version to read the record in"
    )


class ReceiptOut(BaseModel):
    index: int
    leaf_hash: str


class RecordAnswer(BaseModel):
    item: str
    version: int
    record: dict[str, Any]
    receipt: ReceiptOut
