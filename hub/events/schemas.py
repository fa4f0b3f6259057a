"""Event API bodies (docs/protocol.md §7)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.exchange.schemas import ReceiptOut
from hub.kit.clock import UtcDatetime


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(min_length=1, max_length=256)
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
