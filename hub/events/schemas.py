"""Event API bodies (docs/protocol.md §7)."""

from typing import Literal

from pydantic import BaseModel

from onceonly.hub.audit.schemas import ReceiptOut
from onceonly.hub.kit.clock import UtcDatetime
from onceonly.hub.kit.strict import STRICT_INPUT, Subject

# draft-ietf-httpapi-idempotency-key-header §2.1: an sf-string (RFC 8941 §3.3.3), here
# of 1 to 128 characters that need no escape; the bare form (no quotes) is taken too.
_KEY = r"[A-Za-z0-9._~:+/=-]{1,128}"
IDEMPOTENCY_KEY_PATTERN = rf'^(?:"{_KEY}"|{_KEY})$'


def idempotency_key(header: str | None) -> str | None:
    """The key of an ``Idempotency-Key`` header matching IDEMPOTENCY_KEY_PATTERN."""
    return None if header is None else header.strip('"')


class EventIn(BaseModel):
    model_config = STRICT_INPUT

    subject: Subject
    kind: Literal["changed", "deleted"]


class EventAccepted(BaseModel):
    event_id: str
    subscribers: int
    receipt: ReceiptOut


class SubscriptionOut(BaseModel):
    department: str
    item: str
    created_at: UtcDatetime


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    item: str
    department: str
    kind: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: UtcDatetime


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]
