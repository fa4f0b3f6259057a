"""Exchange API bodies (docs/protocol.md §3: a contract)."""

from typing import Any

from pydantic import BaseModel, Field

from onceonly.hub.access.schemas import PURPOSE_PATTERN
from onceonly.hub.audit.schemas import ReceiptOut
from onceonly.hub.kit.strict import STRICT_INPUT, Subject


class RecordQuery(BaseModel):
    """A record query's body: ``version`` a JSON integer (not ``true``, ``"1"`` or ``1.0``)."""

    model_config = STRICT_INPUT

    subject: Subject
    purpose: str = Field(pattern=PURPOSE_PATTERN)
    version: int | None = Field(
        default=None, ge=1, le=1_000_000, description="an earlier version to read the record in"
    )


class RecordReceiptOut(ReceiptOut):
    """A record query's receipt: also the entry's commitment to the delivered record and
    the one key that opens it, which the hub does not keep (docs/audit.md)."""

    commitment: str = Field(description="hmac-sha256:<base64url>, as in the audit entry")
    commitment_key: str = Field(description="base64url; HMAC key of the commitment")


class RecordAnswer(BaseModel):
    item: str
    version: int
    record: dict[str, Any]
    receipt: RecordReceiptOut
